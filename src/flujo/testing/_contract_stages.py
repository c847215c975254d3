"""Compressors and ciphers of your own, part of the backend contract (mixed into
``BackendContract``).

A backend stores what a ``Compressor`` or a ``Cipher`` it is configured with makes of a
payload, names them in the record, and reads the record back through them; a record copied
into another run fails to decrypt. ``KeyServiceCipher`` and ``LzmaCompressor`` are the
stages it uses: written as an application would write its own (a key service's data keys,
another compression algorithm), on nothing but the standard library and ``cryptography``.
"""

from __future__ import annotations

import base64
import json
import lzma
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from flujo.exceptions import CorruptStateError, EncryptionError, PayloadTooLargeError
from flujo.state import Encryption, StateBackend, WorkflowState, register_compressor

from ._compare import assert_identical
from ._samples import sample_values

__all__ = ["KeyServiceCipher", "LzmaCompressor", "StagesContract"]


class LzmaCompressor:
    """xz (the standard library's ``lzma``) as a compressor of an application's own."""

    name = "contract-xz"

    def compress(self, data: bytes) -> bytes:
        return lzma.compress(data, preset=1)

    def decompress(self, data: bytes, limit: int) -> bytes:
        inflater = lzma.LZMADecompressor()
        out = inflater.decompress(data, max_length=limit + 1)
        if len(out) > limit:
            raise PayloadTooLargeError(f"the xz payload decompresses to more than {limit} bytes")
        if not inflater.eof or inflater.unused_data:
            raise CorruptStateError("the xz payload is truncated or followed by other bytes")
        return out


class KeyServiceCipher:
    """Envelope encryption as a key management service does it: each record gets a fresh
    data key, sealed ("wrapped") by a master key the service keeps; ``master_keys`` stands
    for the service here. Both layers are AES-GCM bound to the associated data."""

    name = "contract-kms"

    def __init__(self, master_keys: dict[str, bytes], active_key_id: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM
        self._masters = {key_id: AESGCM(key) for key_id, key in master_keys.items()}
        self.active_key_id = active_key_id

    def encrypt(self, key_id: str, plaintext: bytes, associated_data: bytes) -> bytes:
        data_key = self._aead.generate_key(bit_length=256)
        wrap_nonce, nonce = os.urandom(12), os.urandom(12)
        wrapped = self._masters[key_id].encrypt(wrap_nonce, data_key, associated_data)
        sealed = self._aead(data_key).encrypt(nonce, plaintext, associated_data)
        return wrap_nonce + wrapped + nonce + sealed

    def decrypt(self, key_id: str, ciphertext: bytes, associated_data: bytes) -> bytes | None:
        from cryptography.exceptions import InvalidTag

        master = self._masters.get(key_id)
        if master is None:
            raise EncryptionError(f"the key service has no master key {key_id!r}")
        wrapped, rest = ciphertext[12:12 + 48], ciphertext[12 + 48:]
        try:
            data_key = master.decrypt(ciphertext[:12], wrapped, associated_data)
            plaintext: bytes = self._aead(data_key).decrypt(rest[:12], rest[12:],
                                                            associated_data)
        except (InvalidTag, ValueError):
            return None
        return plaintext


def _state(run_id: str, step: int, context: dict[str, Any]) -> WorkflowState:
    return WorkflowState(run_id=run_id, pipeline_name="contract", current_step_index=step,
                         pipeline_context=context)


class StagesContract:
    """Compressors and ciphers of an application's own. Uses ``make_backend`` and the raw
    hooks of ``BackendContract``."""

    async def make_backend(self, tmp_path: Path, **options: Any) -> StateBackend:
        raise NotImplementedError

    async def get_raw(self, backend: StateBackend, run_id: str) -> bytes:
        raise NotImplementedError

    async def put_raw(self, backend: StateBackend, run_id: str, raw: bytes) -> None:
        raise NotImplementedError

    async def test_a_compressor_of_your_own_stores_and_reads_records(
            self, tmp_path: Path) -> None:
        values = sample_values()
        backend = await self.make_backend(tmp_path, compression=LzmaCompressor())
        try:
            for step in range(3):  # a whole state, then what a history keeps of the next
                await backend.save_state("xz", _state("xz", step, {"v": values, "n": step}))
            loaded = await backend.load_state("xz")
            assert loaded is not None and loaded["current_step_index"] == 2
            assert_identical(loaded["pipeline_context"], {"v": values, "n": 2})
            record = json.loads(await self.get_raw(backend, "xz"))
            assert record["codec"] == "json+contract-xz" and record["key_id"] is None
            json.loads(lzma.decompress(base64.b64decode(record["payload"])))
        finally:
            await backend.close()

    async def test_a_record_of_an_unknown_compressor_is_refused_until_it_is_registered(
            self, tmp_path: Path) -> None:
        # A name of its own, so that no earlier test has registered it.
        compressor = type("Xz", (LzmaCompressor,), {"name": f"xz-{uuid.uuid4().hex[:12]}"})()
        writer = await self.make_backend(tmp_path, compression=compressor)
        reader = await self.make_backend(tmp_path)
        try:
            await writer.save_state("xz", _state("xz", 0, {"n": 1}))
            raw = await self.get_raw(writer, "xz")
            await self.put_raw(reader, "xz", raw)
            with pytest.raises(CorruptStateError, match=f"{compressor.name}.*register_compressor"):
                await reader.load_state("xz")
            assert await self.get_raw(reader, "xz") == raw  # left as found
            register_compressor(compressor)
            loaded = await reader.load_state("xz")
            assert loaded is not None and loaded["pipeline_context"] == {"n": 1}
        finally:
            await writer.close()
            await reader.close()

    async def test_a_cipher_of_your_own_encrypts_and_binds_each_record_to_its_run(
            self, tmp_path: Path) -> None:
        pytest.importorskip("cryptography")
        masters = {"m1": os.urandom(32), "m2": os.urandom(32)}
        secret = "a value only the key service can reveal"
        first = await self.make_backend(
            tmp_path, compression="zlib",
            encryption=Encryption(cipher=KeyServiceCipher(masters, "m1"), store="contract"))
        try:
            await first.save_state("a", _state("a", 0, {"secret": secret}))
            raw = await self.get_raw(first, "a")
            record = json.loads(raw)
            assert (record["codec"], record["key_id"]) == ("json+zlib+contract-kms", "m1")
            assert secret.encode() not in raw
            await self.put_raw(first, "b", json.dumps({**record, "run_id": "b"}).encode())
            with pytest.raises(EncryptionError, match="authentication"):
                await first.load_state("b")
        finally:
            await first.close()
        # The key service rotated: records of the old master key still read, new ones use m2.
        rotated = await self.make_backend(
            tmp_path, compression="zlib",
            encryption=Encryption(cipher=KeyServiceCipher(masters, "m2"), store="contract"))
        aes = await self.make_backend(tmp_path, compression="zlib", encryption=Encryption.single(
            Encryption.generate_key(), store="contract"))
        try:
            await self.put_raw(rotated, "a", raw)
            loaded = await rotated.load_state("a")
            assert loaded is not None and loaded["pipeline_context"] == {"secret": secret}
            await rotated.save_state("a", _state("a", 1, {"secret": secret}))
            assert json.loads(await self.get_raw(rotated, "a"))["key_id"] == "m2"
            await self.put_raw(aes, "a", raw)
            with pytest.raises(EncryptionError, match="cipher 'contract-kms'"):
                await aes.load_state("a")
        finally:
            await rotated.close()
            await aes.close()

