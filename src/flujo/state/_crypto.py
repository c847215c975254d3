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
_MAX_STORE = 256


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

    ``store`` names the store these keys encrypt for (e.g. ``"orders-prod"``): it is bound into
    every record's associated data, so a record copied into another store, or another table,
    that shares a key fails authentication there. Give each store that shares a key its own
    name. The name is not written anywhere: a reader must be configured with it. Records
    encrypted before the store had a name are refused too, unless ``accept_unbound=True``,
    meant only for the window in which ``migrate_all`` binds them to the name.
    """

    keys: Mapping[str, bytes] = field(repr=False)
    active_key_id: str
    accept_plaintext: bool = False
    #: Where nonces come from. Only tests pass anything else (fixed nonces make encrypted
    #: records reproducible for snapshots); reusing a nonce with a key breaks AES-GCM.
    nonce_source: Callable[[int], bytes] = field(default=os.urandom, repr=False, compare=False)
    store: str | None = None
    accept_unbound: bool = False
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
        if self.store is not None and not (
                isinstance(self.store, str) and 0 < len(self.store) <= _MAX_STORE
                and self.store.isprintable()):
            raise EncryptionError(
                f"store {self.store!r} must be a printable str of 1 to {_MAX_STORE} characters")
        if self.accept_unbound and self.store is None:
            raise EncryptionError("accept_unbound=True needs the store's name (store=...)")
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))
        object.__setattr__(self, "_ciphers", MappingProxyType(ciphers))

    @classmethod
    def single(cls, key: bytes, key_id: str = "default", *,
               store: str | None = None) -> Encryption:
        """One key, used for both reading and writing (for the store named ``store``)."""
        return cls(keys={key_id: key}, active_key_id=key_id, store=store)

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

    def decrypt(self, key_id: str | None, blob: bytes, aad: bytes, *, what: str,
                unbound_aad: bytes | None = None) -> bytes:
        """The plaintext of ``blob``, authenticated with ``aad`` or, where given (the store's
        ``accept_unbound`` window), with ``unbound_aad``: the associated data of a record
        encrypted before the store had a name."""
        from cryptography.exceptions import InvalidTag

        cipher = self._cipher(key_id, blob, what=what)
        for associated in (aad,) if unbound_aad is None else (aad, unbound_aad):
            try:
                plaintext: bytes = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                                  associated)
            except InvalidTag:
                continue
            return plaintext
        copied = "run" if self.store is None else f"run or store (this is store {self.store!r})"
        raise EncryptionError(
            f"{what}: the record failed authentication (tampered, copied from another {copied},"
            f" or key {key_id!r} is not the key it was written with)"
        )

    def authenticates(self, key_id: str | None, blob: bytes, aad: bytes) -> bool:
        """Whether ``blob`` was encrypted with key ``key_id`` and associated data ``aad``."""
        from cryptography.exceptions import InvalidTag

        try:
            cipher = self._cipher(key_id, blob, what="")
            cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except (EncryptionError, InvalidTag):
            return False
        return True

    def _cipher(self, key_id: str | None, blob: bytes, *, what: str) -> Any:
        if key_id is None or key_id not in self._ciphers:
            raise EncryptionError(
                f"{what}: encrypted with key id {key_id!r}, which is not configured"
                f" (configured: {', '.join(sorted(self._ciphers))})"
            )
        if len(blob) < NONCE_BYTES + 16:
            raise EncryptionError(f"{what}: the ciphertext is too short to be valid")
        return self._ciphers[key_id]
