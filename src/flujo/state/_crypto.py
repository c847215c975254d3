"""Encryption at rest: the ``Cipher`` protocol, AES-GCM built in (optional ``cryptography``
extra) with key ids for rotation, and ``Encryption``, the policy a backend applies.

A cipher is authenticated encryption with associated data: every record is encrypted with
its header and the store's name as associated data, so a record copied into another run or
store, or a doctored header, fails to decrypt. A KMS-backed cipher (envelope encryption with
data keys, say) implements ``Cipher`` and is passed as ``Encryption(cipher=...)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, cast, runtime_checkable

from flujo.exceptions import EncryptionError

from ._compression import STAGE_NAME, as_bytes, run_stage

__all__ = ["AESGCM_NAME", "NONCE_BYTES", "Cipher", "Encryption"]

#: Bytes of random nonce stored in front of each ciphertext.
NONCE_BYTES = 12
#: The built-in cipher's name, in the codec string of the records it encrypts.
AESGCM_NAME = "aesgcm"
#: Names a cipher cannot take: the transcoding, the settings, flujo's own stages.
_NOT_CIPHERS = frozenset({"json", "none", "auto", AESGCM_NAME, "zlib", "zstd"})
_KEY_SIZES = (16, 24, 32)
_MAX_STORE = 256
#: The longest key id: a key service's (an ARN, a resource path) fits.
_MAX_KEY_ID = 256


@runtime_checkable
class Cipher(Protocol):
    """What a backend needs of an encryption algorithm: authenticated encryption with
    associated data, under key ids.

    ``name`` is stored in the codec string of every record it encrypts (``json+<name>``)
    and must stay stable. ``active_key_id`` is the key new records are encrypted with: flujo
    reads it once per save, writes it in the record's ``key_id`` (it is part of the
    associated data) and passes it to ``encrypt(key_id, plaintext, associated_data)``, which
    seals ``plaintext`` with that key, binding ``associated_data`` (which it need not store:
    the reader passes it again). ``decrypt(key_id, ciphertext, associated_data)`` opens what
    ``encrypt`` made with the key ``key_id``: it returns ``None`` when the ciphertext does
    not authenticate (tampered, copied, or another key), and raises ``EncryptionError`` (or
    ``BackendUnavailableError``, which workers retry) for what is no such failure: an
    unknown key id, a key service that cannot be reached. It must never return
    unauthenticated bytes. flujo calls a cipher from several threads at once.
    """

    @property
    def name(self) -> str: ...

    @property
    def active_key_id(self) -> str: ...

    def encrypt(self, key_id: str, plaintext: bytes, associated_data: bytes) -> bytes: ...

    def decrypt(self, key_id: str, ciphertext: bytes,
                associated_data: bytes) -> bytes | None: ...


def _aesgcm_class() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise EncryptionError(
            "encryption at rest needs the 'cryptography' package: pip install 'flujo[crypto]'"
        ) from exc
    return AESGCM


class _AesGcm:
    """AES-GCM with a random 96-bit nonce stored in front of each ciphertext."""

    name = AESGCM_NAME

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str,
                 nonce_source: Callable[[int], bytes]) -> None:
        aesgcm = _aesgcm_class()
        ciphers: dict[str, Any] = {}
        for key_id, key in keys.items():
            _check_key_id(key_id)
            if not isinstance(key, bytes | bytearray) or len(key) not in _KEY_SIZES:
                raise EncryptionError(
                    f"key {key_id!r} must be 16, 24 or 32 bytes (AES-128/192/256), got "
                    f"{len(key) if isinstance(key, bytes | bytearray) else type(key).__name__}"
                )
            ciphers[key_id] = aesgcm(bytes(key))
        if active_key_id not in ciphers:
            raise EncryptionError(f"active_key_id {active_key_id!r} is not among the keys")
        self.active_key_id = active_key_id
        self._ciphers = ciphers
        self._nonce_source = nonce_source

    def __repr__(self) -> str:  # never the keys
        return (f"AES-GCM(key ids {', '.join(map(repr, sorted(self._ciphers)))},"
                f" active {self.active_key_id!r})")

    def encrypt(self, key_id: str, plaintext: bytes, associated_data: bytes) -> bytes:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise EncryptionError(f"key id {key_id!r} is not configured")
        nonce = self._nonce_source(NONCE_BYTES)
        if len(nonce) != NONCE_BYTES:
            raise EncryptionError(f"nonce_source returned {len(nonce)} bytes, not {NONCE_BYTES}")
        sealed: bytes = cipher.encrypt(nonce, plaintext, associated_data)
        return nonce + sealed

    def decrypt(self, key_id: str, ciphertext: bytes, associated_data: bytes) -> bytes | None:
        from cryptography.exceptions import InvalidTag

        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise EncryptionError(
                f"encrypted with key id {key_id!r}, which is not configured"
                f" (configured: {', '.join(sorted(self._ciphers))})")
        if len(ciphertext) < NONCE_BYTES + 16:
            raise EncryptionError("the ciphertext is too short to be valid")
        try:
            plaintext: bytes = cipher.decrypt(ciphertext[:NONCE_BYTES],
                                              ciphertext[NONCE_BYTES:], associated_data)
        except InvalidTag:
            return None
        return plaintext


def _check_key_id(key_id: object) -> str:
    if not isinstance(key_id, str) or not key_id or len(key_id) > _MAX_KEY_ID \
            or not key_id.isprintable():
        raise EncryptionError(f"key id {key_id!r} must be a printable str of 1 to"
                              f" {_MAX_KEY_ID} characters")
    return key_id


@dataclass(frozen=True)
class Encryption:
    """How a backend encrypts its records: AES-GCM ``keys``, or your own ``cipher``.

    ``keys`` maps a key id to a 16-, 24- or 32-byte AES key. New records are encrypted with
    ``active_key_id``; records are decrypted with the key their envelope names, so old keys
    stay in ``keys`` until ``migrate_all`` has re-encrypted everything with the active key.
    ``cipher``, instead of ``keys``, is any ``Cipher`` (a key management service's, say):
    its ``active_key_id`` is the one records are written with.

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

    #: The name of flujo's own cipher, AES-GCM, in the codec string of the records it encrypts.
    AES_GCM: ClassVar[str] = AESGCM_NAME

    keys: Mapping[str, bytes] | None = field(default=None, repr=False)
    active_key_id: str | None = None
    accept_plaintext: bool = False
    #: Where nonces come from. Only tests pass anything else (fixed nonces make encrypted
    #: records reproducible for snapshots); reusing a nonce with a key breaks AES-GCM.
    nonce_source: Callable[[int], bytes] = field(default=os.urandom, repr=False, compare=False)
    store: str | None = None
    accept_unbound: bool = False
    cipher: Cipher | None = None
    # The cipher records are encrypted with: ``cipher``, or AES-GCM over ``keys``.
    _cipher: Cipher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.keys is None) == (self.cipher is None):
            raise EncryptionError("Encryption needs AES-GCM keys= or a cipher=, not both")
        if self.cipher is not None:
            cipher: Cipher = self._custom(self.cipher)
        else:
            if not isinstance(self.keys, Mapping) or not self.keys:
                raise EncryptionError("Encryption needs at least one key")
            if self.active_key_id is None:
                raise EncryptionError("Encryption(keys=...) needs the active_key_id to write"
                                      " with")
            cipher = _AesGcm(self.keys, self.active_key_id, self.nonce_source)
            object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))
        if self.store is not None and not (
                isinstance(self.store, str) and 0 < len(self.store) <= _MAX_STORE
                and self.store.isprintable()):
            raise EncryptionError(
                f"store {self.store!r} must be a printable str of 1 to {_MAX_STORE} characters")
        if self.accept_unbound and self.store is None:
            raise EncryptionError("accept_unbound=True needs the store's name (store=...)")
        object.__setattr__(self, "_cipher", cipher)

    def _custom(self, cipher: object) -> Cipher:
        """``cipher``, checked: a Cipher whose name and key id a record can hold."""
        try:
            conforms = isinstance(cipher, Cipher)  # reads its properties
        except Exception as exc:
            raise EncryptionError(f"cipher {cipher!r}: its name or active_key_id cannot be"
                                  f" read: {exc!r}") from exc
        if not conforms:
            raise EncryptionError(
                "cipher must have name, active_key_id, encrypt() and decrypt()"
                f" (flujo.state.Cipher), got {cipher!r}")
        checked = cast(Cipher, cipher)
        try:
            name, key_id = checked.name, checked.active_key_id
        except Exception as exc:
            raise EncryptionError(f"cipher {cipher!r}: its name or active_key_id cannot be"
                                  f" read: {exc!r}") from exc
        if not isinstance(name, str) or not STAGE_NAME.fullmatch(name) or \
                name in _NOT_CIPHERS:
            raise EncryptionError(
                f"cipher name {name!r} must be 1 to 32 lowercase letters, digits or '-',"
                f" starting with a letter, and none of {', '.join(sorted(_NOT_CIPHERS))}")
        _check_key_id(key_id)
        if self.active_key_id is not None:
            raise EncryptionError(
                "active_key_id is for keys=; with cipher=, the cipher's active_key_id is the"
                " key records are written with")
        return checked

    @classmethod
    def single(cls, key: bytes, key_id: str = "default", *,
               store: str | None = None) -> Encryption:
        """One key, used for both reading and writing (for the store named ``store``)."""
        return cls(keys={key_id: key}, active_key_id=key_id, store=store)

    @staticmethod
    def generate_key() -> bytes:
        """A fresh random 32-byte (AES-256) key."""
        return os.urandom(32)

    @property
    def name(self) -> str:
        """The cipher's name, as the codec string of the records it encrypts holds it."""
        return self._cipher.name

    @property
    def key_id(self) -> str:
        """The key id new records are encrypted with now (the cipher's, read each time)."""
        return _check_key_id(self._cipher.active_key_id)

    def encrypt(self, plaintext: bytes, aad: bytes, *, key_id: str | None = None,
                what: str = "") -> bytes:
        """``plaintext`` sealed with the key ``key_id`` (the one the record names; by default
        the active key), ``aad`` bound to it."""
        if key_id is None:
            key_id = self.key_id
        cipher = self._cipher
        stage = f"cipher {cipher.name!r}"
        sealed = run_stage(partial(cipher.encrypt, key_id, plaintext, aad), what=what,
                           stage=stage, failed=EncryptionError, failure="failed to encrypt")
        return as_bytes(sealed, what, stage, EncryptionError)

    def decrypt(self, key_id: str | None, blob: bytes, aad: bytes, *, what: str,
                unbound_aad: bytes | None = None) -> bytes:
        """The plaintext of ``blob``, authenticated with ``aad`` or, where given (the store's
        ``accept_unbound`` window), with ``unbound_aad``: the associated data of a record
        encrypted before the store had a name."""
        for associated in (aad,) if unbound_aad is None else (aad, unbound_aad):
            plaintext = self._open(key_id, blob, associated, what=what)
            if plaintext is not None:
                return plaintext
        copied = "run" if self.store is None else f"run or store (this is store {self.store!r})"
        raise EncryptionError(
            f"{what}: the record failed authentication (tampered, copied from another {copied},"
            f" or key {key_id!r} is not the key it was written with)"
        )

    def authenticates(self, key_id: str | None, blob: bytes, aad: bytes) -> bool:
        """Whether ``blob`` was encrypted with key ``key_id`` and associated data ``aad``."""
        try:
            return self._open(key_id, blob, aad, what="") is not None
        except EncryptionError:
            return False

    def _open(self, key_id: str | None, blob: bytes, aad: bytes, *,
              what: str) -> bytes | None:
        cipher = self._cipher
        if key_id is None:
            raise EncryptionError(f"{what}: the record is encrypted but names no key id")
        stage = f"cipher {cipher.name!r}"
        plaintext = run_stage(partial(cipher.decrypt, key_id, blob, aad), what=what,
                              stage=stage, failed=EncryptionError, failure="failed to decrypt")
        if plaintext is None:
            return None
        return as_bytes(plaintext, what, stage, EncryptionError)
