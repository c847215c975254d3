"""Payload compression: zstd (optional ``zstandard`` extra) or zlib (stdlib).

Decompression is bounded: output beyond ``limit`` bytes raises instead of being produced, so a
small malicious record (a "decompression bomb") cannot exhaust memory.
"""

from __future__ import annotations

import zlib
from types import ModuleType
from typing import Literal

from flujo.exceptions import BackendConfigError, CorruptStateError, StateError

__all__ = ["Compression", "compress", "decompress", "resolve_compression", "zstd_available"]

Compression = Literal["zstd", "zlib", "auto"]

# Input is fed to the zstd decompressor in small pieces so that one call cannot produce much
# more than the limit even for extreme compression ratios.
_ZSTD_FEED = 256


class PayloadTooLargeError(CorruptStateError):
    """Internal marker: decompressed output exceeded the configured limit."""


def _zstd() -> ModuleType | None:
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def zstd_available() -> bool:
    """Whether the optional ``zstandard`` package is installed."""
    return _zstd() is not None


def resolve_compression(choice: str | None) -> str | None:
    """Turn a configured compression choice into the algorithm actually used."""
    if choice is None or choice == "none":
        return None
    if choice == "auto":
        return "zstd" if zstd_available() else "zlib"
    if choice == "zstd":
        if not zstd_available():
            raise StateError(
                "compression='zstd' needs the 'zstandard' package: pip install 'flujo[zstd]'"
                " (or use compression='auto' to fall back to zlib)"
            )
        return "zstd"
    if choice == "zlib":
        return "zlib"
    raise BackendConfigError(f"unknown compression {choice!r}; use 'zstd', 'zlib', 'auto' or None")


def compress(algorithm: str, data: bytes, level: int | None = None) -> bytes:
    if algorithm == "zlib":
        return zlib.compress(data, 6 if level is None else level)
    zstandard = _zstd()
    if zstandard is None:
        raise StateError(
            "zstd compression needs the 'zstandard' package: pip install 'flujo[zstd]'"
        )
    compressor = zstandard.ZstdCompressor(level=3 if level is None else level)
    result: bytes = compressor.compress(data)
    return result


def decompress(algorithm: str, data: bytes, *, limit: int, what: str) -> bytes:
    """Decompress ``data``; raise CorruptStateError if it is damaged or inflates past ``limit``."""
    if algorithm == "zlib":
        return _inflate_zlib(data, limit, what)
    if algorithm == "zstd":
        return _inflate_zstd(data, limit, what)
    raise CorruptStateError(f"{what}: unknown compression {algorithm!r}")


def _too_large(what: str, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{what}: the payload decompresses to more than max_payload_bytes={limit} bytes;"
        " refusing it (raise max_payload_bytes if the record is legitimate)"
    )


def _inflate_zlib(data: bytes, limit: int, what: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise CorruptStateError(f"{what}: the zlib payload is damaged: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise _too_large(what, limit)
    if not inflater.eof:
        raise CorruptStateError(f"{what}: the zlib payload is truncated")
    if inflater.unused_data:
        raise CorruptStateError(f"{what}: unexpected bytes after the zlib payload")
    return out


def _inflate_zstd(data: bytes, limit: int, what: str) -> bytes:
    zstandard = _zstd()
    if zstandard is None:
        raise StateError(
            f"{what}: the record is zstd-compressed; reading it needs the 'zstandard' package:"
            " pip install 'flujo[zstd]'"
        )
    inflater = zstandard.ZstdDecompressor().decompressobj()
    chunks: list[bytes] = []
    size = 0
    view = memoryview(data)
    try:
        for start in range(0, len(view), _ZSTD_FEED):
            if inflater.eof:
                raise CorruptStateError(f"{what}: unexpected bytes after the zstd payload")
            chunk = inflater.decompress(view[start : start + _ZSTD_FEED])
            size += len(chunk)
            if size > limit:
                raise _too_large(what, limit)
            chunks.append(chunk)
    except zstandard.ZstdError as exc:
        raise CorruptStateError(f"{what}: the zstd payload is damaged: {exc}") from exc
    if not inflater.eof:
        raise CorruptStateError(f"{what}: the zstd payload is truncated")
    if inflater.unused_data:
        raise CorruptStateError(f"{what}: unexpected bytes after the zstd payload")
    return b"".join(chunks)
