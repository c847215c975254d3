"""Payload compression: the ``Compressor`` protocol, zlib (stdlib) and zstd (optional
``zstandard`` extra) built in, others registered under stable names.

A record names its compressor in its codec string (``json+zstd``), so a compressor is found
by that name when the record is read: the backend's own, else one registered with
``register_compressor`` (``zlib`` and ``zstd`` always are). Decompression is bounded:
output beyond ``limit`` bytes raises instead of being produced, so a small malicious record
(a "decompression bomb") cannot exhaust memory.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Literal, Protocol, cast, runtime_checkable

from flujo.exceptions import (
    BackendConfigError,
    CorruptStateError,
    FlujoError,
    PayloadTooLargeError,
    RecordTooLargeError,
    StateError,
)

__all__ = [
    "Compression",
    "Compressor",
    "ZlibCompressor",
    "ZstdCompressor",
    "compressor_named",
    "register_compressor",
    "resolve_compression",
    "zstd_available",
]

Compression = Literal["zstd", "zlib", "auto"]

#: A compressor's or cipher's name, as a record's codec string holds it.
STAGE_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
#: Names that are not compressors: the transcoding, the settings, the built-in cipher.
RESERVED = frozenset({"json", "none", "auto", "aesgcm"})

# Input is fed to the zstd decompressor in small pieces so that one call cannot produce much
# more than the limit even for extreme compression ratios.
_ZSTD_FEED = 256


@runtime_checkable
class Compressor(Protocol):
    """What a backend needs of a compression algorithm.

    ``name`` is stored in every record it compresses (``json+<name>``) and finds the
    compressor again when the record is read, in this process or another: keep it stable,
    and register the compressor (``register_compressor``) wherever such records are read.
    ``decompress`` must stop once its output passes ``limit`` bytes and raise
    ``PayloadTooLargeError``: only the decompressor can keep a small hostile record from
    taking all memory (a longer result is refused too, but only once it was made). Any
    exception it raises that is no flujo error is reported as a damaged record
    (``CorruptStateError``). flujo calls it from several threads at once.
    """

    @property
    def name(self) -> str: ...

    def compress(self, data: bytes) -> bytes: ...

    def decompress(self, data: bytes, limit: int) -> bytes: ...


def _zstd() -> ModuleType | None:
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def zstd_available() -> bool:
    """Whether the optional ``zstandard`` package is installed."""
    return _zstd() is not None


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the payload decompresses to more than max_payload_bytes={limit} bytes;"
        " refusing it (raise max_payload_bytes if the record is legitimate)")


class ZlibCompressor:
    """zlib (the standard library's), at ``level`` 0 to 9 (6 by default)."""

    name = "zlib"

    def __init__(self, level: int = 6) -> None:
        if type(level) is not int or not -1 <= level <= 9:
            raise BackendConfigError(f"zlib compression_level must be an int from -1 to 9,"
                                     f" got {level!r}")
        self.level = level

    def __repr__(self) -> str:
        return f"ZlibCompressor(level={self.level})"

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    def decompress(self, data: bytes, limit: int) -> bytes:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            raise CorruptStateError(f"the zlib payload is damaged: {exc}") from exc
        if len(out) > limit or inflater.unconsumed_tail:
            raise _too_large(limit)
        if not inflater.eof:
            raise CorruptStateError("the zlib payload is truncated")
        if inflater.unused_data:
            raise CorruptStateError("unexpected bytes after the zlib payload")
        return out


class ZstdCompressor:
    """Zstandard (the ``zstandard`` package, ``flujo[zstd]``), at ``level`` (3 by default)."""

    name = "zstd"

    def __init__(self, level: int = 3) -> None:
        if type(level) is not int or not -(2**17) <= level <= 22:
            raise BackendConfigError(f"zstd compression_level must be an int up to 22,"
                                     f" got {level!r}")
        self.level = level

    def __repr__(self) -> str:
        return f"ZstdCompressor(level={self.level})"

    @staticmethod
    def _module() -> ModuleType:
        zstandard = _zstd()
        if zstandard is None:
            raise StateError("zstd compression needs the 'zstandard' package:"
                             " pip install 'flujo[zstd]'")
        return zstandard

    def compress(self, data: bytes) -> bytes:
        result: bytes = self._module().ZstdCompressor(level=self.level).compress(data)
        return result

    def decompress(self, data: bytes, limit: int) -> bytes:
        zstandard = self._module()
        inflater = zstandard.ZstdDecompressor().decompressobj()
        chunks: list[bytes] = []
        size = 0
        view = memoryview(data)
        try:
            for start in range(0, len(view), _ZSTD_FEED):
                if inflater.eof:
                    raise CorruptStateError("unexpected bytes after the zstd payload")
                chunk = inflater.decompress(view[start : start + _ZSTD_FEED])
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
        except zstandard.ZstdError as exc:
            raise CorruptStateError(f"the zstd payload is damaged: {exc}") from exc
        if not inflater.eof:
            raise CorruptStateError("the zstd payload is truncated")
        if inflater.unused_data:
            raise CorruptStateError("unexpected bytes after the zstd payload")
        return b"".join(chunks)


_BUILT_IN: dict[str, type[ZlibCompressor] | type[ZstdCompressor]] = {
    "zlib": ZlibCompressor, "zstd": ZstdCompressor}
_registered: dict[str, Compressor] = {"zlib": ZlibCompressor(), "zstd": ZstdCompressor()}
_lock = threading.Lock()


def _checked(compressor: object, what: str) -> Compressor:
    """``compressor`` when it is one whose name a record can hold; else BackendConfigError."""
    try:
        conforms = isinstance(compressor, Compressor)  # reads its name
        name = cast(Compressor, compressor).name if conforms else None
    except Exception as exc:
        raise BackendConfigError(f"{what}: {compressor!r} has no readable name:"
                                 f" {exc!r}") from exc
    if not conforms:
        raise BackendConfigError(
            f"{what} must be a compressor name or an object with name, compress() and"
            f" decompress() (flujo.state.Compressor), got {compressor!r}")
    checked = cast(Compressor, compressor)
    if not isinstance(name, str) or not STAGE_NAME.fullmatch(name) or name in RESERVED:
        raise BackendConfigError(
            f"{what}: compressor name {name!r} must be 1 to 32 lowercase letters, digits or"
            f" '-', starting with a letter, and none of {', '.join(sorted(RESERVED))}")
    built_in = _BUILT_IN.get(name)
    if built_in is not None and type(compressor) is not built_in:
        raise BackendConfigError(
            f"{what}: the name {name!r} is flujo's own {built_in.__name__}; give"
            f" {type(compressor).__name__} a name of its own")
    return checked


def _refuse_another_algorithm(compressor: Compressor, what: str) -> None:
    """Refuse ``compressor`` when its name is registered for a compressor of another class:
    a record names its compressor, so one name is one algorithm (another level is fine)."""
    found = _registered.get(compressor.name)
    if found is not None and type(found) is not type(compressor):
        raise BackendConfigError(
            f"{what}: {compressor.name!r} is registered already, as {found!r}; a record"
            " names its compressor, so one name is one algorithm")


def register_compressor(compressor: Compressor) -> None:
    """Make ``compressor`` read the records that name it, in every backend of this process.

    Register it where the records it wrote are read (workers, the ``flujo`` CLI through
    ``--module``), before they are. Registering another compressor under a registered
    name is refused, unless it is of the same class (another level, say): records name
    an algorithm, not its settings.
    """
    checked = _checked(compressor, "register_compressor")
    with _lock:
        _refuse_another_algorithm(checked, "register_compressor")
        _registered[checked.name] = checked


def compressor_named(name: str) -> Compressor | None:
    """The registered compressor called ``name``, if any."""
    return _registered.get(name)


def resolve_compression(choice: str | Compressor | None,
                        level: int | None = None) -> Compressor | None:
    """The compressor a backend writes with: ``None`` (or ``"none"``) for none; ``"auto"``
    (zstd when installed, else zlib), ``"zstd"``, ``"zlib"`` or a registered name; or a
    ``Compressor`` itself. ``level`` is for the built-in ones."""
    if choice is None or choice == "none":
        if level is not None:
            raise BackendConfigError("compression_level needs a compression")
        return None
    if not isinstance(choice, str):
        if level is not None:
            raise BackendConfigError(
                "compression_level is for 'zlib' and 'zstd'; configure the level of your"
                f" own compressor on {choice!r} itself")
        checked = _checked(choice, "compression")
        _refuse_another_algorithm(checked, "compression")
        return checked
    if choice == "auto":
        choice = "zstd" if zstd_available() else "zlib"
    if choice == "zstd" and not zstd_available():
        raise StateError(
            "compression='zstd' needs the 'zstandard' package: pip install 'flujo[zstd]'"
            " (or use compression='auto' to fall back to zlib)")
    built_in = _BUILT_IN.get(choice)
    if built_in is not None:
        return built_in() if level is None else built_in(level)
    found = _registered.get(choice)
    if found is None:
        names = ", ".join(repr(name) for name in sorted(_registered))
        raise BackendConfigError(
            f"unknown compression {choice!r}; use one of {names}, 'auto' or None, or"
            " register your own with flujo.state.register_compressor")
    if level is not None:
        raise BackendConfigError(f"compression_level is for 'zlib' and 'zstd', not {choice!r}")
    return found


def with_context(exc: StateError, what: str) -> StateError:
    """``exc`` as the same kind of error, its message naming ``what`` (the run): a stage's
    error reaches the caller with the type it chose (``BackendUnavailableError`` is retried
    by workers) and the run it happened to."""
    try:
        named = type(exc)(f"{what}: {exc}")
    except TypeError:  # an error class of its own that takes other arguments
        exc.add_note(what)
        return exc
    named.__cause__ = exc  # raise it as it is: ``raise with_context(exc, what)``
    return named


def run_stage(call: Callable[[], object], *, what: str, stage: str,
              failed: type[StateError], failure: str) -> object:
    """What a stage's ``call`` returns, its failures as flujo errors naming ``what``: a
    ``StateError`` it raises keeps its type; another flujo error passes as it is; anything
    else is ``failed`` ("``stage`` ``failure``: the error"), caused by it."""
    try:
        return call()
    except StateError as exc:
        raise with_context(exc, what)  # noqa: B904 - its cause is set: exc
    except FlujoError:
        raise
    except Exception as exc:
        raise failed(f"{what}: {stage} {failure}: {exc!r}") from exc


def as_bytes(result: object, what: str, stage: str, error: type[StateError]) -> bytes:
    """A stage's result as bytes: bytes-like results (``bytearray``, ``memoryview``) are
    taken; anything else is ``error`` naming the stage."""
    if isinstance(result, bytes):
        return result
    if isinstance(result, bytearray | memoryview):
        return bytes(result)
    raise error(f"{what}: {stage} returned {type(result).__name__}, not bytes")


def compress(compressor: Compressor, data: bytes, *, what: str) -> bytes:
    """``data`` compressed; a failure is a StateError naming ``what`` (nothing is saved)."""
    stage = f"compressor {compressor.name!r}"
    result = run_stage(partial(compressor.compress, data), what=what, stage=stage,
                       failed=StateError, failure="failed")
    return as_bytes(result, what, stage, StateError)


def decompress(compressor: Compressor, data: bytes, *, limit: int, what: str) -> bytes:
    """``data`` decompressed, at most ``limit`` bytes of it: RecordTooLargeError past it,
    CorruptStateError when it is damaged, each naming ``what``; another flujo error the
    compressor raises (``BackendUnavailableError``, say) keeps its type."""
    stage = f"compressor {compressor.name!r}"
    try:
        result = run_stage(partial(compressor.decompress, data, limit), what=what,
                           stage=stage, failed=CorruptStateError,
                           failure="found the payload damaged")
    except RecordTooLargeError:
        raise
    except PayloadTooLargeError as exc:  # a stored record too large: it cannot be read here
        raise RecordTooLargeError(str(exc)) from exc
    out = as_bytes(result, what, stage, CorruptStateError)
    if len(out) > limit:
        raise RecordTooLargeError(f"{what}: {_too_large(limit)}")
    return out
