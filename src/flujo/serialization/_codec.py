"""The tagged encoder and decoder.

Hot-path rules (see docs/performance.md): JSON-native scalars return before any lookup, dicts
and lists are walked inline, everything else goes through a per-type *plan* cached by the
registry. Error paths cost nothing until something fails: containers note where they were
(``_note``) while the exception unwinds, and the top level turns those notes into a path and
tells a cycle from mere depth.
"""

from __future__ import annotations

import contextlib
import ctypes  # here, not when first used: reading data imports nothing
import sys
import sysconfig
import threading
import warnings
from collections.abc import Callable
from datetime import UTC, date, datetime, timezone, tzinfo
from decimal import Decimal
from importlib.machinery import EXTENSION_SUFFIXES
from types import FrameType
from typing import Any, Final, Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

import pydantic_core
from pydantic import BaseModel

from ..exceptions import (
    CircularReferenceError,
    DeserializationError,
    FlujoError,
    NestingTooDeepError,
    SerializationError,
    UnknownTypeError,
    UnknownTypeWarning,
    caused,
)
from ._collector import ACTIVE, PAUSE_OBJECTS, Claim, pause, resume
from ._datetimes import common_zoned_text, datetime_text
from ._paths import finish_path, key_segment, note_path
from ._secrets import preview as _preview
from ._undecoded import UndecodedValue

TAG: Final = "$t"
VALUE: Final = "v"
# The instance state of a model or dataclass beyond its field values (fields_set, private and
# plain attributes, fields without a value): an optional third key of its tagged object.
STATE: Final = "s"
DICT_NAME: Final = "dict"  # the escaped form of a dict; its codec is fixed (dict is JSON-native)
DICT_VERSION: Final = 1
DICT_TAG: Final = f"{DICT_NAME}@{DICT_VERSION}"
MODELS_NAME: Final = "models"  # a list of one pydantic model class in its typed form
MODELS_VERSION: Final = 1
MODELS_TAG: Final = f"{MODELS_NAME}@{MODELS_VERSION}"
ROWS_NAME: Final = "rows"  # the same, each model as the array of its field values (_rows)
# 2: a model's rows may note its unset fields (flujo 0.12); rows@1 reads as rows@2
# 3: a datetime may be flujo's datetime text, e.g. with an IANA zone (flujo 0.14); written
# only where a row holds one, so that other rows stay readable by flujo 0.12 and 0.13
ROWS_VERSION: Final = 3
UNZONED_ROWS_VERSION: Final = 2
ROWS_TAG: Final = f"{ROWS_NAME}@{UNZONED_ROWS_VERSION}"
ZONED_ROWS_TAG: Final = f"{ROWS_NAME}@{ROWS_VERSION}"

# Shared references (docs/format.md): an object reached more than once in one value is
# written in full where it first occurs, its tagged object carrying ANCHOR (its number, 1, 2,
# ... in document order), and as {"$t": "ref@1", "v": number} wherever it occurs again.
ANCHOR: Final = "id"
REF_NAME: Final = "ref"
REF_VERSION: Final = 1
REF_TAG: Final = f"{REF_NAME}@{REF_VERSION}"
LIST_NAME: Final = "list"  # an anchored list (a list is JSON-native otherwise)
LIST_VERSION: Final = 1
LIST_TAG: Final = f"{LIST_NAME}@{LIST_VERSION}"
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1
# The ints that compiled code holds unboxed (62 bits and a sign): comparisons with these
# bounds are inline.
_SHORT_MIN: Final = -(2**62)
_SHORT_MAX: Final = 2**62 - 1


# The checks of the JSON-native scalars in the hot loops, as functions of typed arguments:
# compiled, ``INT_MIN <= value <= INT_MAX`` on an untyped value boxes both bounds and
# compares objects, and ``value - value == 0.0`` allocates two floats; here the int is
# compared unboxed and the float as a C double (the plain workload's walk: 30 % less time).
def is_plain_int(number: int) -> bool:
    """Whether an int is written as a plain JSON number: within ``INT_MIN``..``INT_MAX``
    (int64 and uint64), which JSON readers keep exactly (call it with an exact ``int``)."""
    return _SHORT_MIN <= number <= _SHORT_MAX or INT_MIN <= number <= INT_MAX


def is_finite(real: float) -> bool:
    """Whether a float is finite (call it with an exact ``float``): ``inf - inf`` and
    ``nan - nan`` are nan."""
    return real - real == 0.0


EncodePlan = Callable[["Encoder", Any, int], Any]
# Containers call leaf and custom plans directly, skipping Encoder.encode and its depth check;
# past max_depth they use this instead, so a value there is refused when written, as it would
# be when read.
NO_DIRECT_PLANS: Final[dict[type, EncodePlan]] = {}
BatchPlan = Callable[["Encoder", list[Any], int], Any]
DecodePlan = Callable[["Decoder", Any, int], Any]


class Plans(Protocol):
    """What the encoder and the decoder ask of a type registry (``TypeRegistry`` is the
    one): the plan caches they read first, the lookups that fill them, and the few answers
    the built-in forms need. The codec layer knows the registry through this alone, so it
    imports nothing above it."""

    references: bool
    _encode_plans: dict[type, EncodePlan]
    _direct_plans: dict[type, EncodePlan]
    _batch_plans: dict[type, BatchPlan]
    _decode_plans: dict[str, DecodePlan]
    _stateful_tags: dict[str, bool]
    _text_readers: dict[str, Callable[[str], Any]]

    def _encode_plan_for(self, cls: type,
                         default: Callable[[Any], Any] | None) -> EncodePlan: ...

    def _decode_plan_for(self, tag: str, remember_unknown: bool = False) -> DecodePlan: ...

    def keeps_identity(self, cls: type) -> bool: ...

    def built_when_finished(self, cls: type) -> bool: ...

    def current_codec(self, tag: str) -> Any: ...

    def factory_named(self, name: str) -> Callable[[], Any]: ...

    def codec_for_factory(self, factory: object) -> Any: ...


class WithState:
    """The ``v`` of a tagged object that also has a state (``s``), as its decode plan gets it.

    Only the model and dataclass codecs take it (``TypeRegistry`` tells the decoder which
    tags those are); migrations see ``value`` and pass the state through unchanged.
    """

    __slots__ = ("state", "value")

    def __init__(self, value: Any, state: Any) -> None:
        self.value = value
        self.state = state


class _Building:
    """The anchor slot of an object whose decoding has started but that does not exist yet
    (one built from its finished contents: a tuple, a registered type)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<being built>"


BUILDING: Final = _Building()


class SharedObjectsFound(Exception):
    """Raised by ``Encoder.note`` in the first pass to hand over to the passes that write
    shared objects once; never leaves ``run_encoder``."""


class RepeatedInTypedWalk(ValueError):
    """Raised by ``Encoder.note_walked`` when a typed form's walk (a guard or row reader) of
    a later pass meets an object met before: the typed form holds no references, so it is
    refused there anyway (``Encoder.unshared``), and the walk would otherwise follow every
    path to the object (10**30 of them in a value that holds each level 10 times). The typed
    forms catch it as the ValueError pydantic-core's own limits raise; only their walks are
    given ``note_walked``."""


# Objects noted before the first look for repeats (Encoder.note): past the medium workload's
# 5,000, so that values with no sharing pay for one look, at the end. Before it, at
# PAUSE_OBJECTS, a large value pauses the garbage collector (``_collector``).
FIRST_CHECKPOINT: Final = 65_536


# Compiled (mypyc) code recurses on the C stack, which crashes the process when it runs out
# instead of raising RecursionError (as pure Python does where a level goes through C: a
# defaultdict's items). So the codec stops nesting, with the same NestingTooDeepError:
# - where the calling thread's C stack would run out (stack_levels), in both forms;
# - in compiled code, also where pure Python's stack would run out (about three frames a
#   level of the recursion limit), and never past COMPILED_MAX_LEVELS.
COMPILED: Final = __file__.endswith(tuple(EXTENSION_SUFFIXES))
COMPILED_MAX_LEVELS: Final = 2000
# A level of nesting takes at most about 1.5 KiB of C stack in the compiled core (x86-64,
# gcc -O3; the heaviest: a custom type or a model written, a migrated dataclass read): twice
# that, for other compilers and platforms. The deepest level's own work (a custom
# serializer, pydantic-core, building the error) gets STACK_RESERVE.
STACK_LEVEL_BYTES: Final = 3 * 1024
STACK_RESERVE: Final = 16 * 1024
# Where a thread's stack cannot be located: its size is taken as RLIMIT_STACK (the main
# thread) or threading.stack_size(), else this (macOS's default for threads), with
# STACK_RESERVE of it taken as already in use.
FALLBACK_STACK_BYTES: Final = 512 * 1024
_threads: Final = threading.local()
# CPython with a GIL counts references exactly (immortal objects count very many, which only
# makes them candidates in _repeats); free-threaded builds and other interpreters need not.
EXACT_REFCOUNTS: Final = (sys.implementation.name == "cpython" and hasattr(sys, "getrefcount")
                          and not sysconfig.get_config_var("Py_GIL_DISABLED"))
_NATIVE: Final[dict[str, Any]] = {}


def depth_limit(max_depth: int) -> int:
    """The deepest level this form of the codec goes to for ``max_depth`` in this thread."""
    # Two at a time: called once a run, and min() of more arguments builds a tuple.
    limit = min(stack_levels(), max_depth)
    if COMPILED:
        limit = min(limit, sys.getrecursionlimit() // 3)
        limit = min(limit, COMPILED_MAX_LEVELS)
    return limit


def stack_levels() -> int:
    """The levels of nesting the calling thread's C stack holds, measured on its first call.

    Measured once per thread, where flujo is first called in it: the stack a later call
    starts from deeper down must fit in STACK_RESERVE.
    """
    levels: int | None = getattr(_threads, "levels", None)
    if levels is None:
        levels = max(0, (free_stack() - STACK_RESERVE) // STACK_LEVEL_BYTES)
        _threads.levels = levels
    return levels


def free_stack() -> int:
    """The bytes of C stack left below the caller in this thread.

    Measured where the C library says where the thread's stack lies (Linux:
    ``pthread_getattr_np``), from an address on the stack here; estimated elsewhere.
    """
    libc = _libc()
    if libc is not None:
        bounds = _stack_bounds(libc)
        here = _stack_address(libc)
        if bounds is not None and here is not None and bounds[0] < here <= bounds[1]:
            return here - bounds[0]  # stacks grow down on every platform Python runs on
    size = 0
    if threading.current_thread() is threading.main_thread():
        try:
            import resource
            soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
            size = soft if soft > 0 and soft != resource.RLIM_INFINITY else 0
        except (ImportError, OSError, ValueError):  # no resource module: Windows
            size = 0
    else:
        size = threading.stack_size()
    return (size or FALLBACK_STACK_BYTES) - STACK_RESERVE


def _libc() -> Any:
    """The C library through ctypes (PyDLL: calls keep the GIL), or None off Linux."""
    if "libc" not in _NATIVE:
        libc: Any = None
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.PyDLL(None)
                libc.pthread_self.restype = ctypes.c_void_p  # a pthread_t: unsigned long
                libc.pthread_self.argtypes = ()
                libc.pthread_getattr_np.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
                libc.pthread_attr_getstack.argtypes = (ctypes.c_void_p, ctypes.c_void_p,
                                                       ctypes.c_void_p)
                libc.pthread_attr_destroy.argtypes = (ctypes.c_void_p,)
                libc.dl_iterate_phdr.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
            except (OSError, AttributeError):  # a C library without these functions
                libc = None
        _NATIVE["libc"] = libc
    return _NATIVE["libc"]


def _stack_bounds(libc: Any) -> tuple[int, int] | None:
    """The lowest and highest address of the calling thread's stack (no guard page)."""
    attr = (ctypes.c_uint64 * 32)()  # a pthread_attr_t: 56 bytes on x86-64, 64 on arm64
    if libc.pthread_getattr_np(libc.pthread_self(), attr) != 0:
        return None
    low = ctypes.c_void_p()
    size = ctypes.c_size_t()
    try:
        failed = libc.pthread_attr_getstack(attr, ctypes.byref(low), ctypes.byref(size))
    finally:
        libc.pthread_attr_destroy(attr)
    if failed != 0 or not low.value:
        return None
    return int(low.value), int(low.value) + int(size.value)


def _stack_address(libc: Any) -> int | None:
    """An address on the calling thread's stack, a little below the caller's frame: that of
    the local ``dl_iterate_phdr`` hands its callback (glibc and musl alike)."""
    found: list[int] = []

    def note(info: int | None, size: int, data: int | None) -> int:
        found.append(info or 0)
        return 1  # one call is enough

    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                                ctypes.c_void_p)(note)
    libc.dl_iterate_phdr(callback, None)
    return found[0] if found and found[0] else None


def _too_deep(what: str, depth: int, max_depth: int) -> NestingTooDeepError:
    if depth > max_depth:
        return NestingTooDeepError(f"{what} nested deeper than max_depth={max_depth}")
    return _stack_exhausted(max_depth)


class Encoder:
    """One encoding run. Cheap to create; the plans it uses are cached on the registry.

    ``limit`` is ``max_depth`` as far as the stack allows (``depth_limit``): the hot paths
    compare with it, errors name ``max_depth``.

    Shared references (``run_encoder``): the first pass writes the value as if nothing were
    shared and notes, in ``seen``, every object whose identity is kept (lists, dicts, sets
    and the other mutable containers, models, dataclasses, registered types): the object
    itself, so no id is reused while the run lasts. Only when an object was noted twice (or
    the value nested too deeply, which a cycle does) does a second pass find the objects
    reached more than once: it writes every such object once and references it after,
    noting which were referenced (``hits``; its output is dropped). The third pass writes the
    value with anchors on exactly those. ``shared`` maps an object's id to its anchor: 0
    before it is written, -n while ``encode_shared`` hands it to ``encode``, n after.
    """

    __slots__ = ("anchors", "batches", "busy", "checkpoint", "claim", "default", "direct",
                 "fragments", "hashing", "hits", "limit", "manifest", "max_depth", "memo",
                 "open", "plans", "refs", "registry", "seen", "shared", "validate", "walk_root",
                 "walked")

    def __init__(
        self,
        registry: Plans,
        *,
        validate: bool,
        default: Callable[[Any], Any] | None,
        max_depth: int,
        manifest: dict[str, int] | None,
        fragments: bool = False,
    ) -> None:
        self.registry = registry
        self.plans = registry._encode_plans
        self.direct = registry._direct_plans
        self.batches = registry._batch_plans
        self.validate = validate
        self.default = default
        self.max_depth = max_depth
        self.limit = depth_limit(max_depth)
        self.manifest = manifest
        # An EncodingMemo (``_memo``): rows of records to reuse from the last encoding of the
        # same live value, and where this one notes its own. Set by encode_with_manifest.
        self.memo: Any = None
        # Whether the typed parts (a model's JSON, a list's rows) may be written as JSON
        # text, in orjson.Fragment: only for output that goes straight to orjson.dumps
        # (serialize_to_bytes), never for data a caller reads. What reads encoded output
        # inside a run turns it off around the values it reads (a custom serializer's schema
        # check, the byte order of a set's elements): ``as_data``.
        self.fragments = fragments
        # Per run (reset by run_encoder; a run inside a run gets an encoder of its own).
        self.busy = False
        self.seen: list[Any] = []
        self.checkpoint = PAUSE_OBJECTS  # see note()
        # What this run paused the garbage collector under (note(); None: not paused).
        self.claim: Claim | None = None
        self.shared: dict[int, int] | None = None
        # Second pass only: the objects being written (id -> built from its finished value,
        # so it cannot contain itself), anchors and references written so far, and how many
        # set elements or dict keys are being written around the current value.
        self.open: dict[int, bool] = {}
        self.anchors = 0
        self.refs = 0
        self.hashing = 0
        self.hits: set[int] | None = None  # the objects referenced, while finding them
        self.walked: set[int] = set()  # the objects of a typed form's walk (note_walked)
        self.walk_root = 0  # and the id of the model it walks (0: a list's walk)

    def fresh(self) -> Encoder:
        """An encoder with the same settings for a run inside this one's run."""
        return Encoder(self.registry, validate=self.validate, default=self.default,
                       max_depth=self.max_depth, manifest=self.manifest)

    def as_data(self, items: Any, depth: int) -> list[Any]:
        """``encode_items`` with no JSON text (``fragments``) in its output: for encoded
        values read inside the run."""
        fragments = self.fragments
        self.fragments = False
        try:
            return self.encode_items(items, depth)
        finally:
            self.fragments = fragments

    def encode(self, obj: Any, depth: int) -> Any:
        t = type(obj)
        if t is str or t is bool or obj is None:
            return obj
        if t is int and is_plain_int(obj):
            return obj
        if t is float and is_finite(obj):  # NaN and +-inf go to their tagged form
            return obj
        shared = self.shared
        if shared is not None:
            if self.hashing and not _hashes_contents(t):
                return self.encode_unhashed(obj, depth)
            anchor = shared.get(id(obj))
            if anchor is None and self.hits is not None and (
                    t is list or t is dict or self.registry.keeps_identity(t)):
                anchor = 0  # finding what is shared: every object whose identity is kept
            if anchor is not None:
                if anchor >= 0:
                    return self.encode_shared(obj, anchor, depth)
                shared[id(obj)] = -anchor  # from encode_shared: write it here
        try:
            if depth > self.limit:
                raise _too_deep("value", depth, self.max_depth)
            if t is dict:
                self.note(obj)
                return self.encode_dict(obj, depth)
            if t is list:
                self.note(obj)
                if len(obj) > 1:  # a list of one typed model class: one pydantic-core call
                    first = type(obj[0])
                    batch = self.batches.get(first)
                    if batch is None and first not in self.plans and issubclass(
                            first, BaseModel):
                        # Plan the class now, so the output never depends on whether an
                        # instance was encoded before (the batch plan is made with it).
                        with contextlib.suppress(SerializationError):
                            self.registry._encode_plan_for(first, self.default)
                        batch = self.batches.get(first)
                    if batch is not None:
                        written = batch(self, obj, depth)
                        if written is not None:
                            return written
                return self.encode_list(obj, depth)
            plan = self.plans.get(t)
            if plan is None:
                plan = self.registry._encode_plan_for(t, self.default)
            return plan(self, obj, depth)
        except SerializationError as exc:
            note_path(exc, None, obj)
            raise
        except RecursionError:
            # The Python stack ran out before the limit did: report it as too deep (with the
            # path, or as a cycle when an object repeats), never as a bare RecursionError.
            error = _stack_exhausted(self.max_depth)
            note_path(error, None, obj)
            raise caused(error, None)

    def note(self, obj: Any) -> None:
        """Note an object whose identity is kept (``seen``). Past each checkpoint of the
        first pass, look for one noted twice: a value that reaches a few objects very many
        times (a tree of references, written out) stops being walked there, and the later
        passes, which write each object once, take over."""
        seen = self.seen
        seen.append(obj)
        if len(seen) > self.checkpoint:
            if self.checkpoint < FIRST_CHECKPOINT:  # a large value: see _collector
                if ACTIVE and self.claim is None:  # (interpreted, flujo never pauses)
                    claim = self.claim = Claim()  # held first: run_encoder resumes it
                    pause(claim)
                self.checkpoint = FIRST_CHECKPOINT
                return
            self.checkpoint *= 2  # amortized: the checks cost at most twice the notes
            if self.shared is None and self.registry.references and _repeats(seen):
                raise SharedObjectsFound

    def walking(self, root: Any = None) -> Callable[[Any], None]:
        """The ``keep`` of a typed form's walk (a guard or row reader) of ``root`` (a model;
        None for a list's): ``note`` in the first pass, which looks for repeats as it grows;
        in the later passes, ``note_walked``, which ends the walk at its first object met
        before."""
        if self.shared is None:
            return self.note
        self.walked = set()
        self.walk_root = 0 if root is None else id(root)
        return self.note_walked

    def note_walked(self, obj: Any) -> None:
        """``note`` in a typed form's walk of a later pass: an object met before, in the
        walk or in the pass (``shared``), refuses the typed form there (``unshared`` would),
        and is refused at once, so the walk never follows every path to it. The root model
        may be shared (its tagged object takes the anchor), not met twice in its walk."""
        key = id(obj)
        walked = self.walked
        shared = self.shared
        if key in walked or (shared is not None and key in shared and key != self.walk_root):
            raise RepeatedInTypedWalk
        walked.add(key)
        self.seen.append(obj)

    def encode_shared(self, obj: Any, anchor: int, depth: int) -> Any:
        """Second pass: ``obj`` is reached more than once. The first time it is written in
        full, with an anchor; every other time as a reference to that anchor."""
        key = id(obj)
        if anchor:
            late = self.open.get(key)
            if late is not None:  # inside itself: a cycle
                if late:
                    error = CircularReferenceError(
                        f"circular reference: the {type(obj).__qualname__} here contains "
                        "itself, and a registered type is built from its finished value, so "
                        "it cannot be part of a cycle; let a list, dict, model or dataclass "
                        "hold the back reference instead")
                    note_path(error, None, obj)
                    raise error
                if self.hashing and _hashes_contents(type(obj)):
                    error = CircularReferenceError(
                        f"circular reference: the {type(obj).__qualname__} here is a set "
                        "element or dict key inside itself, and its hash depends on its "
                        "contents, which do not exist yet when it is read back")
                    note_path(error, None, obj)
                    raise error
            self.refs += 1
            if self.hits is not None:
                self.hits.add(key)
            manifest = self.manifest
            if manifest is not None:
                manifest[REF_NAME] = REF_VERSION
            return {TAG: REF_TAG, VALUE: anchor}
        self.anchors += 1
        anchor = self.anchors
        self.shared[key] = -anchor  # type: ignore[index]
        self.open[key] = self.registry.built_when_finished(type(obj))
        try:
            out = self.encode(obj, depth)
        finally:
            del self.open[key]
        if type(out) is dict:
            if TAG in out and out is not obj:  # a tagged object written for obj
                out[ANCHOR] = anchor
                return out
            return self.anchored(DICT_NAME, DICT_VERSION, DICT_TAG,
                                 [[k, v] for k, v in out.items()], anchor)
        return self.anchored(LIST_NAME, LIST_VERSION, LIST_TAG, out, anchor)

    def encode_unhashed(self, obj: Any, depth: int) -> Any:
        """Inside a set element or dict key, an object whose hash is not computed from what
        it holds (hashed by identity, or not hashable): what it holds is not hashed."""
        hashing = self.hashing
        self.hashing = 0
        try:
            return self.encode(obj, depth)
        finally:
            self.hashing = hashing

    def anchored(self, name: str, version: int, tag: str, value: Any,
                 anchor: int) -> dict[str, Any]:
        manifest = self.manifest
        if manifest is not None:
            manifest[name] = version
        return {TAG: tag, VALUE: value, ANCHOR: anchor}

    def unshared(self, start: int) -> bool:
        """Whether no object noted in ``seen`` from ``start`` on is shared: where the typed
        form, which holds no references, may write them."""
        shared = self.shared
        if shared is None:
            return True
        seen = self.seen
        if self.hits is None:
            return all(id(seen[i]) not in shared for i in range(start, len(seen)))
        # Finding what is shared: the typed form may take the objects if none was met
        # before, here or elsewhere; they are then met, and meeting one again is a hit.
        ids = [id(seen[i]) for i in range(start, len(seen))]
        if len(set(ids)) != len(ids) or any(key in shared for key in ids):
            return False
        for key in ids:
            shared[key] = 1  # written (any anchor: this pass's output is dropped)
        return True

    # JSON-native subtrees are returned as they are, not rebuilt: a container is copied only
    # from its first item that encodes to something else (so the result may share native
    # lists and dicts with the input). Native items are checked inline: a call per string
    # would dominate.
    def encode_list(self, obj: list[Any], depth: int) -> list[Any]:
        out: list[Any] | None = None
        child = depth + 1
        direct = self.direct if child <= self.limit else NO_DIRECT_PLANS
        index = 0
        try:
            for index, item in enumerate(obj):
                ti = type(item)
                if (ti is str or ti is bool or item is None
                        or (ti is int and is_plain_int(item))
                        or (ti is float and is_finite(item))):
                    if out is not None:
                        out.append(item)
                    continue
                leaf = direct.get(ti)
                encoded = leaf(self, item, child) if leaf is not None else self.encode(item, child)
                if out is None:
                    if encoded is item:
                        continue
                    out = obj[:index]
                out.append(encoded)
        except SerializationError as exc:
            note_path(exc, f"[{index}]", None)
            raise
        return obj if out is None else out

    def encode_dict(self, obj: dict[Any, Any], depth: int) -> Any:
        if TAG in obj:
            return self.encode_escaped_dict(obj, depth)
        out: dict[str, Any] | None = None
        child = depth + 1
        direct = self.direct if child <= self.limit else NO_DIRECT_PLANS
        key: Any = None
        try:
            for key, value in obj.items():
                if type(key) is not str:
                    break
                tv = type(value)
                if (tv is str or tv is bool or value is None
                        or (tv is int and is_plain_int(value))
                        or (tv is float and is_finite(value))):
                    if out is not None:
                        out[key] = value
                    continue
                leaf = direct.get(tv)
                encoded = leaf(self, value, child) if leaf is not None else self.encode(
                    value, child)
                if out is None:
                    if encoded is value:
                        continue
                    out = {}
                    for earlier, kept in obj.items():
                        if earlier is key:
                            break
                        out[earlier] = kept
                out[key] = encoded
            else:
                return obj if out is None else out
        except SerializationError as exc:
            note_path(exc, key_segment(key), None)
            raise
        # A non-str key: written as the escaped dict (outside the try, which would otherwise
        # add this key's segment to the path of an error inside the escaped form). The values
        # before it are written already, and their objects noted: they are taken as written,
        # never written twice (a second time would look like an object held twice).
        return self._escaped_from(obj, key, out, depth)

    def _escaped_from(self, obj: dict[Any, Any], stop: Any, written: dict[str, Any] | None,
                      depth: int) -> dict[str, Any]:
        pairs: list[list[Any]] = []
        rest: list[tuple[Any, Any]] = []
        items = iter(obj.items())
        for earlier, kept in items:
            if earlier is stop:
                rest.append((earlier, kept))
                break
            # unchanged values are themselves when nothing before them changed (out is None)
            pairs.append([earlier, written[earlier] if written is not None else kept])
        rest.extend(items)
        pairs.extend(self.encode_pairs(rest, depth + 1))
        return self._escaped(pairs)

    def encode_escaped_dict(self, obj: dict[Any, Any], depth: int) -> dict[str, Any]:
        """A dict with a non-str or reserved key, as the ``dict`` type's ``[[k, v], ...]``.

        Written here rather than through the dict codec's plan: a level of nested escaped
        dicts then costs three Python frames instead of six, so max_depth is reachable.
        """
        return self._escaped(self.encode_pairs(obj.items(), depth + 1))

    def _escaped(self, pairs: list[list[Any]]) -> dict[str, Any]:
        manifest = self.manifest
        if manifest is not None:
            manifest[DICT_NAME] = DICT_VERSION
        return {TAG: DICT_TAG, VALUE: pairs}

    def encode_items(self, items: Any, depth: int) -> list[Any]:
        """Encode an iterable into a list, noting the index of a failing item."""
        out: list[Any] = []
        direct = self.direct if depth <= self.limit else NO_DIRECT_PLANS
        try:
            for item in items:
                ti = type(item)
                if (ti is str or ti is bool or item is None
                        or (ti is int and is_plain_int(item))
                        or (ti is float and is_finite(item))):
                    out.append(item)
                    continue
                leaf = direct.get(ti)
                out.append(leaf(self, item, depth) if leaf is not None
                           else self.encode(item, depth))
        except SerializationError as exc:
            note_path(exc, f"[{len(out)}]", None)
            raise
        return out

    def encode_pairs(self, pairs: Any, depth: int) -> list[list[Any]]:
        """Encode ``(key, value)`` pairs as ``[[k, v], ...]`` (dicts with non-str keys)."""
        out: list[list[Any]] = []
        key: Any = None
        sharing = self.shared is not None  # keys are hashed when read back (encode_shared)
        try:
            for key, value in pairs:
                if sharing:
                    self.hashing += 1
                    try:
                        encoded_key = self.encode(key, depth)
                    finally:
                        self.hashing -= 1
                else:
                    encoded_key = self.encode(key, depth)
                out.append([encoded_key, self.encode(value, depth)])
        except SerializationError as exc:
            note_path(exc, key_segment(key), None)
            raise
        return out


# Values of an ``Any`` field nested deeper than this take the generic form, which checks
# them against max_depth (the typed form is written without counting levels).
_PLAIN_DEPTH: Final = 32


def plain_json(value: Any, keep: Any, depth: int) -> bool:
    """Whether ``value`` (in an ``Any`` field) is exactly JSON: str, bool, None, an int
    within 64 bits, a finite float, and lists and dicts of them with str keys, none a
    subclass. pydantic writes such a value as it is, and reading it as ``Any`` gives it back
    (a tuple, set, subclass or datetime would come back as something else). ``keep`` notes
    each list and dict, as the guards do."""
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return is_plain_int(value)
    if t is float:
        return is_finite(value)
    if depth >= _PLAIN_DEPTH:
        return False
    if t is list:
        keep(value)
        for item in value:
            if type(item) is not str and not plain_json(item, keep, depth + 1):
                return False
        return True
    if t is dict:
        keep(value)
        for key, item in value.items():
            # pydantic-core writes a key's lone surrogates as U+FFFD: a changed key
            if type(key) is not str or not (key.isascii() or is_unicode(key)):
                return False
            if type(item) is not str and not plain_json(item, keep, depth + 1):
                return False
        return True
    return False


# The checks ``exact_fields`` makes, by code: a kind, a simple type (_guard._SIMPLE_CHECKS)
# or a datetime with its time zone constraint, and the flags below.
STR: Final = 0
BOOL: Final = 1
INT: Final = 2
FLOAT: Final = 3
DECIMAL: Final = 4
UUID_: Final = 5
DATE: Final = 6
DATETIME: Final = 7  # no constraint: naive, UTC or a plain offset
AWARE_DATETIME: Final = 8
NAIVE_DATETIME: Final = 9
_KIND: Final = 15
NULLABLE: Final = 16  # None passes too (the item's, for a LIST_OF)
LIST_OF: Final = 32  # a list of values of the kind
NULLABLE_LIST: Final = 64  # with LIST_OF: None passes too
_EXACT_TYPES: Final[tuple[type, ...]] = (str, bool, int, float, Decimal, UUID, date, datetime,
                                         datetime, datetime)


def exact_fields(fields: dict[str, Any], names: tuple[str, ...], checks: tuple[int, ...],
                 keep: Callable[[Any], Any]) -> bool:
    """Whether each of ``names`` in a model's ``fields`` (its ``__dict__``) holds a value
    that passes the check at the same position, as the guards' own checks of those types
    (``_guard``): exactly the type, an int within 64 bits, a finite float or Decimal, a
    datetime without ``fold`` whose zone is as constrained and kept exactly (UTC or a plain
    offset); with LIST_OF, a list (noted with ``keep``, as the guards note it) of such values.
    A missing name raises KeyError, as the guards' subscripts do. One call in a guard
    instead of a condition per field: a wide model's guard compiles that much faster, and
    runs no slower."""
    for i in range(len(names)):
        value: Any = fields[names[i]]
        check = checks[i]
        if check & LIST_OF:
            if value is None and check & NULLABLE_LIST:
                continue
            found: type = type(value)  # (compared as a type: value stays Any)
            if found is not list:
                return False
            keep(value)
            item_check = check & (NULLABLE | _KIND)
            if item_check == STR:  # the usual list of a model: list[str]
                for item in value:
                    if type(item) is not str:
                        return False
                continue
            for item in value:
                if not _exact(item, item_check):
                    return False
        elif not _exact(value, check):
            return False
    return True


def _exact(value: Any, check: int) -> bool:
    if value is None and check & NULLABLE:
        return True
    check &= _KIND
    found: type = type(value)
    if found is not _EXACT_TYPES[check]:
        return False
    if check == INT:
        number: int = value
        # Compiled, an int within these bounds is unboxed and compared inline; only the
        # others are compared with the 64-bit bounds, which are boxed.
        return _SHORT_MIN <= number <= _SHORT_MAX or INT_MIN <= number <= INT_MAX
    if check == FLOAT:
        real: float = value
        return real - real == 0.0  # finite: inf - inf and nan - nan are nan
    if check == DECIMAL:
        return bool(value.is_finite())
    return check < DATETIME or _datetime_kept(value, check)


def _datetime_kept(value: datetime, check: int) -> bool:
    if value.fold:
        return False
    zone = value.tzinfo
    if check == NAIVE_DATETIME:
        return zone is None
    if zone is None:
        return check == DATETIME
    return zone is UTC or plain_offset(zone)


# plain_offset's answers for the zones met last, by identity: an entry holds its zone, so its
# id is not reused while it is here. Only zones whose answer never changes are kept:
# ``timezone``, pydantic's ``TzInfo`` and ``ZoneInfo`` are immutable. pydantic hands out one
# TzInfo per offset and ZoneInfo one object per key, so the datetimes of a list mostly hit.
_PLAIN_ZONES: Final[dict[int, tuple[tzinfo, bool]]] = {}
_PLAIN_ZONES_KEPT: Final = 256
# (pydantic_core exports TzInfo in the releases flujo is tested with; not in every one it allows)
_IMMUTABLE_ZONES: Final[tuple[type, ...]] = tuple(
    zone for zone in (timezone, ZoneInfo, getattr(pydantic_core, "TzInfo", None))
    if zone is not None)


def plain_offset(zone: tzinfo) -> bool:
    """A fixed offset in whole minutes, unnamed: what an ISO string keeps exactly."""
    known = _PLAIN_ZONES.get(id(zone))
    if known is not None and known[0] is zone:
        return known[1]
    plain = _plain_offset(zone)
    if type(zone) in _IMMUTABLE_ZONES:
        if len(_PLAIN_ZONES) >= _PLAIN_ZONES_KEPT:
            _PLAIN_ZONES.clear()
        _PLAIN_ZONES[id(zone)] = (zone, plain)
    return plain


def datetime_cell(dt: datetime, zoned: list[bool]) -> Any:
    """A datetime in the general rows (``rows@3``): itself where pydantic-core writes it as
    it is (no zone, UTC or a plain offset, fold 0), else its text (``datetime_text``), and
    ``zoned`` (the row reader's list) then notes that the rows hold one. One call from the
    generated row reader, which tests the commonest zones (None, UTC) itself."""
    text = common_zoned_text(dt)  # first: most datetimes that reach here are in a ZoneInfo
    if text is None:
        if _datetime_kept(dt, DATETIME):
            return dt
        text = datetime_text(dt)  # (which looks for the common text again: a rare miss)
    if not zoned:
        zoned.append(True)
    return text


def _plain_offset(zone: tzinfo) -> bool:
    if type(zone) is timezone:
        offset = zone.utcoffset(None)
        return offset.microseconds == 0 and offset.seconds % 60 == 0 and (
            zone.tzname(None) == timezone(offset).tzname(None))
    if type(zone).__module__.startswith("pydantic"):  # pydantic's own TzInfo
        fixed = zone.utcoffset(None)
        return fixed is not None and fixed.microseconds == 0 and fixed.seconds % 60 == 0
    return False


def is_unicode(text: str) -> bool:
    """False for text with a lone surrogate, which no UTF-8 (so no JSON) can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_PACKAGE: Final = __name__.partition(".")[0]  # flujo: the state API calls in too


def caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning raised here at the code that called flujo.

    ``warnings.warn`` counts Python frames; compiled functions have none, so the count starts
    at the innermost Python frame there and at this function's caller otherwise.
    """
    frame: FrameType | None = sys._getframe(0 if COMPILED else 1)
    level = 1
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module != _PACKAGE and not module.startswith(_PACKAGE + "."):
            break
        frame = frame.f_back
        level += 1
    return level


def _stack_exhausted(max_depth: int) -> NestingTooDeepError:
    return NestingTooDeepError(
        f"nested too deeply: the stack ran out before max_depth={max_depth}")


def run_encoder(encoder: Encoder, obj: Any,
                finish: Callable[[Any], Any] | None = None) -> Any:
    """Encode ``obj``; with ``finish``, return ``finish(encoded)`` instead, computed before
    a paused garbage collector is resumed (writing the bytes of a large value)."""
    if encoder.busy:  # called again from inside a run (a custom serializer's own call)
        encoder = encoder.fresh()
    encoder.busy = True
    try:
        if finish is None:
            return _encode_run(encoder, obj)
        return finish(_encode_run(encoder, obj))
    except SerializationError as exc:
        finished = finish_path(exc)
        if finished is exc:
            raise
        raise caused(finished, None)
    except RecursionError:
        raise caused(_stack_exhausted(encoder.max_depth), None)
    finally:
        # Let go of the objects (the seen list keeps every one alive); the later passes
        # reset the rest of their state themselves (_encode_run).
        encoder.seen = []
        if encoder.checkpoint != PAUSE_OBJECTS:  # a large first pass moved it on
            encoder.checkpoint = PAUSE_OBJECTS
        encoder.busy = False
        claim = encoder.claim
        if claim is not None:
            encoder.claim = None
            resume(claim)


def _encode_run(encoder: Encoder, obj: Any) -> Any:
    """The first pass, and the other two when something is shared (see ``Encoder``)."""
    first = encoder.seen
    try:
        out = encoder.encode(obj, 0)
    except SharedObjectsFound:
        pass  # found early (Encoder.note): the next passes write references
    except NestingTooDeepError:
        if not encoder.registry.references or not _repeats(first):
            raise
        # A cycle (or depth and sharing at once): the next passes write references.
    else:
        if len(first) < 2 or not encoder.registry.references or not _repeats(first):
            return out
    # ``first`` (and each pass's seen) stays alive until the run ends: no id of an object
    # noted is reused meanwhile, by a temporary object of a later pass.
    direct = encoder.direct
    encoder.direct = NO_DIRECT_PLANS  # so every object goes through encode's shared check
    try:
        hits: set[int] = set()
        _start_pass(encoder, {}, hits)
        encoder.encode(obj, 0)
        finding = encoder.seen
        _start_pass(encoder, dict.fromkeys(hits, 0), None)
        out = encoder.encode(obj, 0)
        del finding
        return out
    finally:
        encoder.direct = direct
        encoder.shared = encoder.hits = None
        encoder.open = {}
        encoder.checkpoint = FIRST_CHECKPOINT


def _start_pass(encoder: Encoder, shared: dict[int, int], hits: set[int] | None) -> None:
    encoder.shared = shared
    encoder.hits = hits
    encoder.seen = []
    encoder.open = {}
    encoder.anchors = encoder.refs = encoder.hashing = 0
    if encoder.manifest is not None:
        encoder.manifest.clear()


def _hashes_contents(cls: type) -> bool:
    """Whether instances of ``cls`` hash by what they hold (not by identity, and hashable)."""
    own: object = cls.__hash__
    return own is not None and own is not object.__hash__


def _probe_holder() -> list[Any]:
    return [object()]


def _repeats(seen: list[Any]) -> bool:
    """Whether an object is in ``seen`` twice.

    A set of every id costs about as much again as noting them. Where CPython counts every
    reference exactly (its builds with a GIL), an object held by one container of the value
    and noted once has exactly as many references as a probe held the same way, counted in
    the same call; only the others can repeat, so only they go into the set.
    """
    size = len(seen)
    if size <= 16:  # a small value: comparing every pair costs less than a set
        for i in range(size - 1):
            item = seen[i]
            for j in range(i + 1, size):
                if seen[j] is item:
                    return True
        return False
    if not EXACT_REFCOUNTS or size < 64:
        return len(set(map(id, seen))) != size
    # The probe: one container holds it, as one holds a value's object. Made in a function
    # of its own, whose temporaries are gone when it returns (compiled code keeps them to
    # the end of the function), and added without one.
    holder = _probe_holder()
    seen.extend(holder)
    try:
        counts: list[int] = list(map(sys.getrefcount, seen))
    finally:
        seen.pop()
        holder.clear()  # used after the count: compiled code frees a local after its last use
    baseline: int = counts.pop()
    if counts.count(baseline) == len(counts):  # the usual answer, at C speed
        return False
    candidates: list[Any] = []
    for index in range(len(counts)):  # typed: native int comparisons when compiled
        if counts[index] != baseline:
            candidates.append(seen[index])
    return len(set(map(id, candidates))) != len(candidates)


class Decoder:
    """One decoding run over JSON data (dict/list/str/int/float/bool/None only)."""

    __slots__ = ("anchors", "busy", "limit", "max_depth", "owned", "pending", "plans",
                 "registry", "stateful", "strict", "text_readers")

    def __init__(self, registry: Plans, *, strict: bool, max_depth: int) -> None:
        self.registry = registry
        self.plans = registry._decode_plans
        self.stateful = registry._stateful_tags
        self.text_readers = registry._text_readers
        self.strict = strict
        self.max_depth = max_depth
        self.limit = depth_limit(max_depth)  # see Encoder
        # Per run (reset by run_decoder). ``anchors[n - 1]`` is the object of anchor n, or
        # BUILDING until it exists. ``pending`` is the anchor the next ``bind`` fills: the
        # tagged object being decoded carries it, and the plans of objects that can contain
        # themselves (lists, dicts, sets, models, dataclasses, ...) bind the empty object
        # before decoding what it holds, so a reference inside it finds it.
        self.busy = False
        self.anchors: list[Any] = []
        self.pending = 0
        # Whether this run may build its result out of the data's own lists and dicts
        # (``run_decoder(..., owned=True)``): data parsed for this call alone, which nobody
        # else holds. A plain list or dict is then kept, with what it holds decoded in place,
        # instead of copied: decoding a parsed document allocates only the decoded objects
        # (and the garbage collector has half as many containers to walk).
        self.owned = False

    def fresh(self) -> Decoder:
        return Decoder(self.registry, strict=self.strict, max_depth=self.max_depth)

    def bind(self, obj: Any) -> None:
        """Called by a plan with the object it is building, before decoding its contents."""
        anchor = self.pending
        if anchor:
            self.anchors[anchor - 1] = obj
            self.pending = 0

    def resolve(self, anchor: Any) -> Any:
        """The object a reference (``ref@1``) names: one whose anchor came before it."""
        if type(anchor) is not int:
            raise DeserializationError(f"{REF_TAG}: expected an anchor number, got "
                                       f"{_preview(anchor)}")
        anchors = self.anchors
        if not 1 <= anchor <= len(anchors):
            raise DeserializationError(
                f"{REF_TAG}: no anchor {anchor} before this reference ({len(anchors)} so far):"
                " a reference may only name an object written before it")
        obj = anchors[anchor - 1]
        if obj is BUILDING:
            raise DeserializationError(
                f"{REF_TAG}: anchor {anchor} names an object that is still being read and is "
                "built from its finished contents (a tuple, a registered type), so it "
                "cannot contain itself")
        return obj

    def decode(self, data: Any, depth: int) -> Any:
        t = type(data)
        if t is str or t is int or t is bool or data is None or t is float:
            return data
        if depth > self.limit:
            raise _too_deep("data", depth, self.max_depth)
        if t is dict:
            if TAG in data:
                return self.decode_tagged(data, depth)
            return self.decode_object(data, depth + 1)
        if t is list:
            return self.decode_items(data, depth + 1)
        raise DeserializationError(
            f"expected JSON data (dict, list, str, int, float, bool, None), got {t.__name__}"
        )

    def decode_object(self, data: Any, depth: int, owner: str = "") -> dict[str, Any]:
        """The values of a JSON object, each at ``depth``; for the fields of ``owner`` (a
        type's name), ``data`` is checked to be an object first."""
        if owner and type(data) is not dict:
            raise DeserializationError(
                f"{owner}: expected an object of fields, got {_preview(data)}")
        if self.owned:
            return self.decode_object_in_place(data, depth)
        out: dict[str, Any] = {}
        key: Any = None
        try:
            for key, value in data.items():
                if type(key) is not str:
                    raise DeserializationError(
                        f"object keys must be strings in JSON data, got {key!r}"
                    )
                tv = type(value)
                if tv is str or tv is int or tv is bool or value is None or tv is float:
                    out[key] = value
                elif tv is dict and TAG in value:
                    out[key] = self.decode_tagged(value, depth)
                else:
                    out[key] = self.decode(value, depth)
        except SerializationError as exc:
            note_path(exc, key_segment(key), None)
            raise
        return out

    def decode_items(self, data: list[Any], depth: int) -> list[Any]:
        if self.owned:
            return self.decode_items_in_place(data, depth)
        items: list[Any] = []
        try:
            for item in data:
                ti = type(item)
                if ti is str or ti is int or ti is bool or item is None or ti is float:
                    items.append(item)
                elif ti is dict and TAG in item:
                    items.append(self.decode_tagged(item, depth))
                else:
                    items.append(self.decode(item, depth))
        except SerializationError as exc:
            note_path(exc, f"[{len(items)}]", None)
            raise
        return items

    def decode_object_in_place(self, data: dict[str, Any], depth: int) -> dict[str, Any]:
        """``decode_object`` of owned data: ``data`` itself, each value that decodes to
        another object replaced (after the walk: a dict may not change while iterated)."""
        replaced: list[Any] = []  # keys and their new values, alternately
        key: Any = None
        try:
            for key, value in data.items():
                if type(key) is not str:
                    raise DeserializationError(
                        f"object keys must be strings in JSON data, got {key!r}"
                    )
                tv = type(value)
                if tv is str or tv is int or tv is bool or value is None or tv is float:
                    continue
                if tv is dict and TAG in value:
                    replaced.append(key)
                    replaced.append(self.decode_tagged(value, depth))
                else:
                    decoded = self.decode(value, depth)
                    if decoded is not value:
                        replaced.append(key)
                        replaced.append(decoded)
        except SerializationError as exc:
            note_path(exc, key_segment(key), None)
            raise
        for i in range(0, len(replaced), 2):
            data[replaced[i]] = replaced[i + 1]
        return data

    def decode_items_in_place(self, data: list[Any], depth: int) -> list[Any]:
        """``decode_items`` of owned data: ``data`` itself, its items decoded in place."""
        i = 0
        try:
            for i in range(len(data)):
                item = data[i]
                ti = type(item)
                if ti is str or ti is int or ti is bool or item is None or ti is float:
                    continue
                if ti is dict and TAG in item:
                    data[i] = self.decode_tagged(item, depth)
                else:
                    decoded = self.decode(item, depth)
                    if decoded is not item:
                        data[i] = decoded
        except SerializationError as exc:
            note_path(exc, f"[{i}]", None)
            raise
        return data

    def decode_pairs(self, data: list[Any], depth: int, what: str) -> list[tuple[Any, Any]]:
        """Decode ``[[key, value], ...]`` (see ``Encoder.encode_pairs``).

        Keys and values are decoded at ``depth`` itself, as the encoder wrote them: a pair is
        not a level of nesting, so whatever nesting encoded within max_depth also decodes.
        """
        pairs: list[tuple[Any, Any]] = []
        position = -1  # in the pair being decoded: -1 the pair itself, 0 its key, 1 its value
        try:
            for pair in data:
                position = -1
                if type(pair) is not list or len(pair) != 2:
                    raise DeserializationError(
                        f"{what}: expected [key, value] pairs, got {_preview(pair)}")
                position = 0
                key = self.decode(pair[0], depth)
                position = 1
                pairs.append((key, self.decode(pair[1], depth)))
        except SerializationError as exc:
            index = len(pairs)
            note_path(exc, f"[{index}]" if position < 0 else f"[{index}][{position}]", None)
            raise
        return pairs

    def decode_tagged(self, data: dict[str, Any], depth: int) -> Any:
        if depth > self.limit:  # containers call this directly, bypassing self.decode()
            raise _too_deep("data", depth, self.max_depth)
        tag = data[TAG]
        size = len(data)
        anchor = 0  # in this frame, not another: a shared level costs no more stack
        if size != 2 and ANCHOR in data:
            anchor = self.open_anchor(data)
            size -= 1
        if type(tag) is not str or VALUE not in data or not (
                size == 2 or (size == 3 and STATE in data)):
            raise DeserializationError(
                f"malformed tagged object: expected exactly {{{TAG!r}: str, {VALUE!r}: ...}} "
                f"(and {STATE!r} for an object's state, {ANCHOR!r} for an anchor), got keys "
                f"{sorted(map(str, data))}"
            )
        # A type stored as one string (a datetime, UUID, Decimal, ...) is read straight by
        # its text reader. When the reader raises, the plan reads the value again and its
        # error says what went wrong: the readers are pure, so they fail the same way twice.
        read = self.text_readers.get(tag)
        if read is not None and size == 2:
            text = data[VALUE]
            if type(text) is str:
                try:
                    obj = read(text)
                except Exception:  # the plan reports it
                    pass
                else:
                    return obj if not anchor else self.close_anchor(anchor, obj)
        plan = self.plans.get(tag)
        # The anchor this object carries, for its plan to bind (none for what it holds).
        self.pending = anchor
        try:
            if plan is None:
                plan = self.registry._decode_plan_for(tag, not self.strict)
            if size == 2:
                obj = plan(self, data[VALUE], depth + 1)
            elif tag not in self.stateful:
                raise DeserializationError(
                    f"{tag!r}: only models and dataclasses have an object state ({STATE!r})")
            else:
                obj = plan(self, WithState(data[VALUE], data[STATE]), depth + 1)
        except UnknownTypeError as exc:
            if self.strict:
                note_path(exc, None, None)
                raise
            warnings.warn(f"{exc}; kept the tagged data undecoded", UnknownTypeWarning,
                          stacklevel=caller_stacklevel())
            obj = UndecodedValue(data)  # written back as it was stored (_undecoded)
        except SerializationError as exc:
            note_path(exc, None, None)
            raise
        except FlujoError:
            raise
        except RecursionError:  # before max_depth: see Encoder.encode
            raise caused(_stack_exhausted(self.max_depth), None)
        except Exception as exc:
            raise caused(DeserializationError(
                f"cannot decode {tag!r} from {_preview(data[VALUE])}: {exc}"
            ), exc)
        return obj if not anchor else self.close_anchor(anchor, obj)

    def open_anchor(self, data: dict[str, Any]) -> int:
        """The anchor of a tagged object (the first occurrence of a shared object): checked
        to be the next number, its slot reserved until the object exists."""
        anchor = data[ANCHOR]
        anchors = self.anchors
        if type(anchor) is not int or anchor != len(anchors) + 1:
            raise DeserializationError(
                f"malformed anchor {_preview(anchor)}: anchors are numbered 1, 2, 3, ... in "
                f"the order they occur, so this one must be {len(anchors) + 1}")
        if data[TAG] == REF_TAG:
            raise DeserializationError("malformed reference: a reference has no anchor")
        anchors.append(BUILDING)
        return anchor

    def close_anchor(self, anchor: int, obj: Any) -> Any:
        if self.pending == anchor:  # its plan built no object before returning
            self.pending = 0
        bound = self.anchors[anchor - 1]
        if bound is BUILDING:
            self.anchors[anchor - 1] = obj
        elif bound is not obj:
            raise DeserializationError(
                f"anchor {anchor} was bound to another object than the one read")
        return obj


def run_decoder(decoder: Decoder, data: Any, owned: bool = False) -> Any:
    """Decode ``data``; with ``owned``, data parsed for this call alone, which the result
    may be built from (see ``Decoder.owned``)."""
    if decoder.busy:  # called again from inside a run (a custom deserializer's own call)
        decoder = decoder.fresh()
    decoder.busy = True
    decoder.owned = owned
    try:
        return decoder.decode(data, 0)
    except SerializationError as exc:
        raise caused(finish_path(exc), exc.__cause__)
    except RecursionError:
        raise caused(_stack_exhausted(decoder.max_depth), None)
    finally:
        if decoder.anchors:
            decoder.anchors = []
        decoder.pending = 0
        decoder.owned = False
        decoder.busy = False


