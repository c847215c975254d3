"""Encryption at rest: AES-GCM (optional ``cryptography`` extra) with key ids for rotation."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from flujo.exceptions import EncryptionError

__all__ = ["NONCE_BYTES", "Encryption"]

#: Bytes of random nonce stored in front of each ciphertext.
NONCE_BYTES = 12
_KEY_SIZES = (16, 24, 32)


def _aesgcm_class() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise EncryptionError(
            "encryption at rest needs the 'cryptography' package: pip install 'flujo[crypto]'"
        ) from exc
    return AESGCM


@dataclass(frozen=True)
class Encryption:
    """AES-GCM keys for a backend.

    ``keys`` maps a key id to a 16-, 24- or 32-byte key. New records are encrypted with
    ``active_key_id``; records are decrypted with the key their envelope names, so old keys
    stay in ``keys`` until ``migrate_all`` has re-encrypted everything with the active key.

    With encryption configured, plaintext records are refused on read (EncryptionError) unless
    ``accept_plaintext=True``, which is meant only for the window in which an existing store is
    being converted with ``migrate_all``.
    """

    keys: Mapping[str, bytes] = field(repr=False)
    active_key_id: str
    accept_plaintext: bool = False
    #: Where nonces come from. Only tests pass anything else (fixed nonces make encrypted
    #: records reproducible for snapshots); reusing a nonce with a key breaks AES-GCM.
    nonce_source: Callable[[int], bytes] = field(default=os.urandom, repr=False, compare=False)
    _ciphers: Mapping[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        aesgcm = _aesgcm_class()
        if not self.keys:
            raise EncryptionError("Encryption needs at least one key")
        ciphers: dict[str, Any] = {}
        for key_id, key in self.keys.items():
            if not isinstance(key_id, str) or not key_id or len(key_id) > 64:
                raise EncryptionError(f"key id {key_id!r} must be a str of 1 to 64 characters")
            if not isinstance(key, bytes | bytearray) or len(key) not in _KEY_SIZES:
                raise EncryptionError(
                    f"key {key_id!r} must be 16, 24 or 32 bytes (AES-128/192/256), got "
                    f"{len(key) if isinstance(key, bytes | bytearray) else type(key).__name__}"
                )
            ciphers[key_id] = aesgcm(bytes(key))
        if self.active_key_id not in ciphers:
            raise EncryptionError(f"active_key_id {self.active_key_id!r} is not among the keys")
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))
        object.__setattr__(self, "_ciphers", MappingProxyType(ciphers))

    @classmethod
    def single(cls, key: bytes, key_id: str = "default") -> Encryption:
        """One key, used for both reading and writing."""
        return cls(keys={key_id: key}, active_key_id=key_id)

    @staticmethod
    def generate_key() -> bytes:
        """A fresh random 32-byte (AES-256) key."""
        return os.urandom(32)

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = self.nonce_source(NONCE_BYTES)
        if len(nonce) != NONCE_BYTES:
            raise EncryptionError(f"nonce_source returned {len(nonce)} bytes, not {NONCE_BYTES}")
        sealed: bytes = self._ciphers[self.active_key_id].encrypt(nonce, plaintext, aad)
        return nonce + sealed

    def decrypt(self, key_id: str | None, blob: bytes, aad: bytes, *, what: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        if key_id is None or key_id not in self._ciphers:
            raise EncryptionError(
                f"{what}: encrypted with key id {key_id!r}, which is not configured"
                f" (configured: {', '.join(sorted(self._ciphers))})"
            )
        if len(blob) < NONCE_BYTES + 16:
            raise EncryptionError(f"{what}: the ciphertext is too short to be valid")
        try:
            plaintext: bytes = self._ciphers[key_id].decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad
            )
        except InvalidTag as exc:
            raise EncryptionError(
                f"{what}: the record failed authentication (tampered, copied from another run,"
                f" or key {key_id!r} is not the key it was written with)"
            ) from exc
        return plaintext
