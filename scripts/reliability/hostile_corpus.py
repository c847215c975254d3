"""Hostile-input corpus: malicious and malformed stored data, each input in a watched process.

    python scripts/reliability/hostile_corpus.py --json hostile.json [--bomb-mib 4096]

Every input is fed to flujo the way stored data reaches it (``safe_deserialize``,
``deserialize_from_json``, a backend's ``load_record`` over bytes placed in a real file,
SQLite row or memory store, ``save_state`` of hostile values, hostile run ids on every
backend, ``flujo state ls``/``show`` of a store holding text aimed at the terminal) inside
a forked worker process that

* records Python audit events while the input is processed, and the modules added to
  ``sys.modules``: any ``import``, ``exec``,
  ``compile``, process creation (``os.system``, ``subprocess.Popen``, ``os.exec*``,
  ``os.posix_spawn``, ``fork``), ``pickle``/``marshal`` loading, ``ctypes``, sockets, class
  attribute changes, and any file written outside the sandbox (or at all, for pure decoding)
  counts as code execution;
* reports each outcome: a flujo error (a subclass of ``FlujoError``: fine), a correct decode
  (fine), any other exception (a failure), or a failed post-condition (a decode that differs
  from what was stored under encryption, a record changed by a refused save...).

The parent gives each input a time limit: an input still running after it is a hang, and a
worker that dies (segfault, abort, out of memory) is an interpreter crash; the next worker
carries on with the next input. Inputs tied to a known, not yet fixed bug are marked
``known_issue`` and reported separately.
"""

# Each case binds its input through a lambda's default argument (``lambda sb, d=data: ...``),
# which mypy cannot infer the type of ("Cannot infer type of lambda", code misc); the cases
# are checked at run time by the campaign itself.
# mypy: disable-error-code="misc"

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import enum
import functools
import io
import json
import os
import re
import resource
import select
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
import unicodedata
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import difference, postgres_dsn, postgres_unavailable, write_json
from pydantic import BaseModel, ConfigDict

from flujo import Flujo, PipelineContext, Step
from flujo.exceptions import FlujoError
from flujo.serialization import (
    UnportableTypeWarning,
    deserialize_from_json,
    register_custom_serializer,
    register_type,
    safe_deserialize,
    safe_serialize,
)
from flujo.serialization._auto import auto_kind, auto_name
from flujo.state import (
    Encryption,
    FileBackend,
    InMemoryBackend,
    PostgresBackend,
    SQLiteBackend,
    StateBackend,
    WorkflowState,
)
from flujo.state.backends._dirs import Directory
from flujo.state.backends.base import EnvelopeStateBackend

# -- types the corpus aims at ------------------------------------------------------------------

CALLS: list[str] = []  # constructors run by decoding: must stay empty
HOOKS: list[str] = []  # lookup hooks a type defines for its values (enum _missing_): allowed


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: int = 0


class Strict(BaseModel):
    a: int = 0


@dataclasses.dataclass
class Trap:
    """A dataclass whose constructor must never be run by decoding."""

    x: Any = 0

    def __post_init__(self) -> None:
        CALLS.append("Trap.__post_init__")


class Shade(enum.Enum):
    DARK = "dark"

    @classmethod
    def _missing_(cls, value: object) -> Any:
        HOOKS.append(f"Shade._missing_({value!r:.40})")
        return None


class Pair(NamedTuple):
    left: Any
    right: Any


class Money:
    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount, self.currency = amount, currency


def _money_from(v: dict[str, Any]) -> Money:
    return Money(Decimal(v["amount"]), v["currency"])


register_custom_serializer(Money, lambda m: {"amount": str(m.amount), "currency": m.currency},
                           deserializer=_money_from, name="hostile.Money",
                           schema={"type": "object", "properties": {
                               "amount": {"type": "string"}, "currency": {"type": "string"}},
                               "required": ["amount", "currency"]})


class PairSet(BaseModel):
    pairs: set[tuple[int, int]] = set()


class Versioned(BaseModel):
    value: Any = None


register_type(Versioned, name="hostile.Versioned", version=2,
              migrations={1: lambda v: {"value": v}})

# -- outcomes and audit ------------------------------------------------------------------------


class CheckFailed(Exception):
    """A post-condition of an input failed (a failure of flujo, reported as such)."""


@dataclass
class Case:
    category: str
    name: str
    run: Callable[[Sandbox], str]  # returns what a correct outcome looked like
    writes: bool = False  # may write inside the sandbox (stores); nothing outside, ever
    known_issue: str = ""
    timeout: float | None = None
    isolate: bool = False  # run alone in a fresh worker (its memory growth is reported)


FORBIDDEN = ("import", "exec", "compile", "os.system", "os.exec", "os.posix_spawn",
             "os.spawn", "os.fork", "os.forkpty", "subprocess.", "pickle.", "marshal.",
             "ctypes.", "socket.", "urllib.", "http.", "webbrowser.", "shutil.", "os.kill",
             "os.putenv", "os.unsetenv", "object.__setattr__", "object.__delattr__",
             "sys.addaudithook", "builtins.input", "code.__new__", "function.__new__")
PATH_EVENTS = {"open", "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod",
               "os.chown", "os.truncate", "os.link", "os.symlink", "os.utime"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _where(text: str) -> str:
    """The absolute path of a file an audit event names. The stores name their files
    relative to a directory descriptor (``dir_fd``, which "open" events do not carry): the
    ``Directory`` in the caller's frame says which directory that is."""
    if os.path.isabs(text):
        return text
    frame: FrameType | None = sys._getframe(2)  # hook <- the audited call's caller
    for _ in range(3):
        if frame is None:
            break
        for name in ("self", "directory", "root"):
            candidate = frame.f_locals.get(name)
            if isinstance(candidate, Directory):
                return str(candidate.path / text)
        frame = frame.f_back
    return text


class Audit:
    """Collects the audit events of the input being processed."""

    def __init__(self, sandbox: Path, allowed_reads: tuple[str, ...]) -> None:
        self.sandbox = str(sandbox)
        self.allowed_reads = allowed_reads
        self.active = False
        self.writes = False
        self.sockets_ok = False
        self.events: list[str] = []

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event.startswith(FORBIDDEN):
            if event.startswith("socket.") and self.sockets_ok:
                return
            if event == "object.__setattr__" and args and not isinstance(args[0], type):
                return
            self.events.append(f"{event}{str(args)[:120]}")
            return
        if event not in PATH_EVENTS or not args:
            return
        path = args[0]
        if not isinstance(path, str | bytes | os.PathLike):
            return  # a file descriptor
        text = _where(os.fsdecode(os.fspath(path)))
        inside = os.path.abspath(text).startswith(self.sandbox)
        if event == "open":
            mode = args[1] if len(args) > 1 else None
            flags = args[2] if len(args) > 2 else 0
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if not writing:
                if not inside and not os.path.abspath(text).startswith(self.allowed_reads):
                    self.events.append(f"read outside the sandbox: {text}")
                return
        if not (inside and self.writes):
            self.events.append(f"{event} {text}")


# -- the sandbox: stores a worker process works on ---------------------------------------------

KEY = bytes(range(32))
OTHER_KEY = bytes(range(50, 82))
ENCRYPTION = Encryption({"k1": KEY, "k2": OTHER_KEY}, active_key_id="k1")


class Sandbox:
    """Backends in a private directory (plus PostgreSQL when configured), one event loop."""

    def __init__(self, root: Path, postgres: tuple[str, str] | None) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.counter = 0
        self.plain: dict[str, EnvelopeStateBackend] = {
            "memory": InMemoryBackend(),
            "file": FileBackend(root / "files", fsync=False),
            "sqlite": SQLiteBackend(root / "state.db", synchronous="NORMAL"),
        }
        self.encrypted: dict[str, EnvelopeStateBackend] = {
            "memory": InMemoryBackend(encryption=ENCRYPTION),
            "file": FileBackend(root / "efiles", fsync=False, encryption=ENCRYPTION),
            "sqlite": SQLiteBackend(root / "estate.db", synchronous="NORMAL",
                                    encryption=ENCRYPTION),
        }
        self.postgres = postgres
        self.audit: Audit | None = None

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def fresh_id(self, prefix: str = "h") -> str:
        self.counter += 1
        return f"{prefix}-{os.getpid()}-{self.counter}"

    @contextlib.contextmanager
    def readonly(self) -> Iterator[None]:
        """Inside: writing any file is a violation, even in the sandbox."""
        audit = self.audit
        saved = audit.writes if audit else False
        if audit:
            audit.writes = False
        try:
            yield
        finally:
            if audit:
                audit.writes = saved

    def place(self, kind: str, run_id: str, raw: bytes, *, encrypted: bool = False) -> None:
        """Store ``raw`` as the record of ``run_id``, bypassing every check."""
        backend = (self.encrypted if encrypted else self.plain)[kind]
        if kind == "memory":
            assert isinstance(backend, InMemoryBackend)
            backend.put_raw(run_id, raw)
        elif kind == "file":
            assert isinstance(backend, FileBackend)
            backend.file_for(run_id).write_bytes(raw)
        else:
            assert isinstance(backend, SQLiteBackend)
            self.run(backend.load_record("warm-up"))  # the table exists
            try:
                value: str | bytes = raw.decode("utf-8")
            except UnicodeDecodeError:
                value = raw  # not text: stored as a BLOB in the envelope column
            with contextlib.closing(sqlite3.connect(backend.path)) as conn, conn:
                conn.execute(
                    'INSERT OR REPLACE INTO "flujo_state" VALUES (?, 1, ?, ?, 1, ?, ?, ?)',
                    (run_id, "running", "", "2024-01-01T00:00:00.000000+00:00",
                     "2024-01-01T00:00:00.000000+00:00", value))

    def load(self, kind: str, run_id: str, *, encrypted: bool = False) -> WorkflowState | None:
        backend = (self.encrypted if encrypted else self.plain)[kind]
        with self.readonly():
            record = self.run(backend.load_record(run_id))
        return None if record is None else record.state

    def stored(self, kind: str, run_id: str, *, encrypted: bool = False) -> bytes | None:
        backend = (self.encrypted if encrypted else self.plain)[kind]
        if isinstance(backend, InMemoryBackend):
            return backend.raw_records().get(run_id)
        if isinstance(backend, FileBackend):
            path = backend.file_for(run_id)
            return path.read_bytes() if path.exists() else None
        assert isinstance(backend, SQLiteBackend)
        with contextlib.closing(sqlite3.connect(backend.path)) as conn:
            row = conn.execute('SELECT envelope FROM "flujo_state" WHERE run_id = ?',
                               (run_id,)).fetchone()
        if row is None:
            return None
        return row[0] if isinstance(row[0], bytes) else str(row[0]).encode("utf-8")


# -- helpers for the cases ---------------------------------------------------------------------

def decode(data: Any, **options: Any) -> Any:
    return safe_deserialize(data, **options)


def refused(action: Callable[[], Any]) -> str:
    """``action`` must raise (a FlujoError; anything else is reported as untyped)."""
    value = action()
    raise CheckFailed(f"accepted: returned {type(value).__name__} {value!r:.100}")


def describe(value: Any) -> str:
    size = f"[{len(value)}]" if hasattr(value, "__len__") else ""
    return f"decoded {type(value).__name__}{size}"


def nested_list(depth: int, inner: Any = 1) -> Any:
    data = inner
    for _ in range(depth):
        data = [data]
    return data


def nested_dict(depth: int) -> Any:
    data: Any = 1
    for _ in range(depth):
        data = {"k": data}
    return data


def nested_tag(depth: int, tag: str, wrap: Callable[[Any], Any]) -> Any:
    data: Any = 1
    for _ in range(depth):
        data = {"$t": tag, "v": wrap(data)}
    return data


def state_for(run_id: str, **context: Any) -> WorkflowState:
    return WorkflowState(run_id=run_id, pipeline_name="hostile", pipeline_context=context,
                         created_at=datetime(2026, 1, 1, tzinfo=UTC),
                         updated_at=datetime(2026, 1, 1, tzinfo=UTC))


# -- the corpus --------------------------------------------------------------------------------

DANGEROUS = [
    "os:system", "os.system", "posix:system", "os:popen", "os:execv", "os:remove",
    "builtins:eval", "builtins.eval", "builtins:exec", "builtins:__import__", "builtins:open",
    "builtins:getattr", "builtins:compile", "builtins:breakpoint", "builtins:object",
    "builtins:type", "__builtins__:eval", "subprocess:Popen", "subprocess.Popen",
    "subprocess:run", "subprocess:check_output", "subprocess:getoutput", "pickle:loads",
    "pickle.loads", "_pickle:loads", "pickle:Unpickler", "marshal:loads", "importlib:import_module",
    "importlib.import_module", "ctypes:CDLL", "shutil:rmtree", "sys:exit", "sys:modules",
    "os:environ", "runpy:run_path", "code:interact", "pty:spawn", "socket:socket",
    "webbrowser:open", "tempfile:NamedTemporaryFile", "io:open", "pathlib:Path",
    "typing:Any", "pydantic:BaseModel", "pydantic.main:BaseModel", "enum:Enum",
    "dataclasses:dataclass", "collections:namedtuple", "functools:partial",
    "operator:attrgetter", "operator:methodcaller", "flujo:Flujo",
    "flujo.application._runner:Flujo", "flujo.state:FileBackend",
    "flujo.serialization:TypeRegistry", f"{__name__}:Money", f"{__name__}:CALLS",
    "builtins:object.__subclasses__", "pydantic.main:BaseModel.__subclasses__",
    f"{__name__}:Trap.__post_init__", f"{__name__}:Trap.__init__", f"{__name__}:Trap.__class__",
    f"{__name__}:Loose.model_validate", f"{__name__}:Loose.__class__",
    "os:system.__call__", "subprocess:Popen.__init__", "this_module_does_not_exist:Anything",
    "os:sys\u0074em", " os:system", "os:system ", "OS:SYSTEM", "os:system\x00", "os\x00:system",
    "<locals>", "os:<locals>.system",
    # parametrizations: with no trusted module nothing is parsed, imported or created
    "pydantic.main:BaseModel[__import__('os').system('id')]", f"{__name__}:Money[os.system]",
    "typing:List[os.system]", "flujo.state.models:WorkflowState[int]",
    "this_module_does_not_exist:Page[Row]", "os:system[~T]",
]
VALUES: list[Any] = ["id > /tmp/flujo-pwned", ["sh", "-c", "id"], {"args": "id", "shell": True},
                     {"$t": "bytes@1", "v": base64.b64encode(b"cos\nsystem\n.").decode()}]
VERSIONS = ["2", "0", "01", "-1", "1.0", "1e3", "\u0661", "99999999999999999999999", "",
            " 1", "1 ", "+1", "0x1", "\uff11"]


def _tag_cases() -> list[Case]:
    cases: list[Case] = []
    for target in DANGEROUS:
        for number, value in enumerate(VALUES):
            data = {"$t": f"{target}@1", "v": value}
            cases.append(Case("dangerous tags", f"{target!r} v{number}",
                              lambda sb, d=data: refused(lambda: decode(d))))
        data = {"$t": "defaultdict@1", "v": {"factory": target, "items": [["k", 1]]}}
        cases.append(Case("dangerous tags", f"defaultdict factory {target!r}",
                          lambda sb, d=data: refused(lambda: decode(d))))
        nested = {"ok": [1, 2, {"deep": {"$t": f"{target}@1", "v": "x"}}]}
        cases.append(Case("dangerous tags", f"{target!r} nested",
                          lambda sb, d=nested: refused(lambda: decode(d))))
        lenient = {"$t": f"{target}@1", "v": "x"}
        cases.append(Case("dangerous tags", f"{target!r} strict=False",
                          lambda sb, d=lenient: _kept_undecoded(d)))
    for version in VERSIONS:
        for target in ("os:system", "set", "decimal", f"{__name__}:Strict"):
            data = {"$t": f"{target}@{version}", "v": "1"}
            cases.append(Case("malformed tags", f"{target}@{version!r}",
                              lambda sb, d=data: refused(lambda: decode(d))))
    weird: list[Any] = [
        {"$t": 5, "v": 1}, {"$t": None, "v": 1}, {"$t": ["set@1"], "v": []},
        {"$t": "set@1"}, {"$t": "set@1", "v": [], "x": 1}, {"$t": "set@1", "V": []},
        {"$t": "", "v": 1}, {"$t": "@1", "v": 1}, {"$t": "set@1@1", "v": []},
        {"$t": "$t@1", "v": 1}, {"$t": "x" * 1_000_000 + "@1", "v": 1},
        {"$t": "\ud800@1", "v": 1}, {"$t": "set\x00@1", "v": []},
        {"$t": "dict@1", "v": {"a": 1}}, {"$t": "dict@1", "v": [[1]]},
        {"$t": "dict@1", "v": [[1, 2, 3]]}, {"$t": "dict@1", "v": [["$t", "os:system@1"]]},
    ]
    for number, data in enumerate(weird):
        cases.append(Case("malformed tags", f"shape {number}",
                          lambda sb, d=data: _typed_or_decoded(lambda: decode(d))))
    return cases


def _kept_undecoded(data: Any) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = decode(data, strict=False)
    if value != data:
        raise CheckFailed(f"strict=False turned {data!r:.60} into {value!r:.60}")
    return "kept undecoded"


def _typed_or_decoded(action: Callable[[], Any]) -> str:
    value = action()
    return value if isinstance(value, str) else describe(value)


def _reference_cases() -> list[Case]:
    """Shared references (docs/format.md): a reference may only name an anchor written
    before it, anchors count up, nothing is built from a reference but a lookup."""
    empty = {"$t": "list@1", "v": [], "id": 1}
    hostile: list[tuple[str, Any]] = [
        ("forward reference", [{"$t": "ref@1", "v": 1}, empty]),
        ("reference to nothing", {"$t": "ref@1", "v": 7}),
        ("reference 0", [empty, {"$t": "ref@1", "v": 0}]),
        ("reference -1", [empty, {"$t": "ref@1", "v": -1}]),
        ("reference 2**80", [empty, {"$t": "ref@1", "v": 2**80}]),
        ("reference true", [empty, {"$t": "ref@1", "v": True}]),
        ("reference as text", [empty, {"$t": "ref@1", "v": "1"}]),
        ("reference to a list", [empty, {"$t": "ref@1", "v": [1]}]),
        ("anchor skips a number", {"$t": "list@1", "v": [], "id": 2}),
        ("anchor repeats", [empty, {"$t": "list@1", "v": [], "id": 1}]),
        ("anchor 0", {"$t": "list@1", "v": [], "id": 0}),
        ("anchor as text", {"$t": "list@1", "v": [], "id": "1"}),
        ("anchored reference", [empty, {"$t": "ref@1", "v": 1, "id": 2}]),
        ("reference with a state", [empty, {"$t": "ref@1", "v": 1, "s": {}}]),
        ("anchor and an extra key", {"$t": "list@1", "v": [], "id": 1, "x": 0}),
        ("tuple inside itself", {"$t": "tuple@1", "v": [{"$t": "ref@1", "v": 1}], "id": 1}),
        ("frozenset inside itself",
         {"$t": "frozenset@1", "v": [{"$t": "ref@1", "v": 1}], "id": 1}),
        ("list as a dict key", [empty, {"$t": "dict@1", "v": [[{"$t": "ref@1", "v": 1}, 0]]}]),
        ("list as a set element", [empty, {"$t": "set@1", "v": [{"$t": "ref@1", "v": 1}]}]),
        ("set inside itself as its element",
         {"$t": "set@1", "v": [{"$t": "ref@1", "v": 1}], "id": 1}),
        ("anchored list that is an object", {"$t": "list@1", "v": {"a": 1}, "id": 1}),
        ("reference inside a typed model", {"$t": f"{__name__}:Strict@1",
                                            "v": [{"a": {"$t": "ref@1", "v": 1}}]}),
        ("100,000 anchors, the last referenced ahead",
         [*({"$t": "list@1", "v": [], "id": n} for n in range(1, 100_001)),
          {"$t": "ref@1", "v": 100_002}]),
    ]
    cases = [Case("references", name, lambda sb, d=data: refused(lambda: decode(d)))
             for name, data in hostile]
    # 31 levels each holding the previous one 10 times: 10**30 values as a tree, read as 31
    # lists; plain JSON refuses to write it out
    bomb: list[Any] = [{"$t": "list@1", "v": [0], "id": 1}]
    for n in range(2, 32):
        bomb.append({"$t": "list@1", "v": [{"$t": "ref@1", "v": n - 1}] * 10, "id": n})
    cases.append(Case("references", "reference bomb: read",
                      lambda sb: _typed_or_decoded(lambda: decode(bomb))))
    cases.append(Case("references", "reference bomb: written out as plain JSON",
                      lambda sb: refused(lambda: safe_serialize(decode(bomb), mode="json"))))
    chain: list[Any] = [{"$t": "list@1", "v": [], "id": 1}]
    chain += [{"$t": "ref@1", "v": 1}] * 1_000_000
    cases.append(Case("references", "a million references to one list",
                      lambda sb: _typed_or_decoded(lambda: decode(chain))))
    return cases


class HostileLabel(str):
    """A subclass of a builtin (docs/format.md): stored as its str and attributes."""


class HostileRatio(float):
    __slots__ = ("unit",)


def _library_value_cases() -> list[Case]:
    """Malformed stored values of the codecs for subclasses of builtins, pydantic.v1 models,
    library value classes and numpy: each refused with a flujo error, in bounded work, no
    import beyond the fixed modules (loaded here first, as a reading process would have)."""
    for module in ("numpy", "pydantic_extra_types.color", "semver.version", "ulid",
                   "bson.objectid", "pydantic.v1.types"):
        with contextlib.suppress(Exception):  # a library not installed: its cases still run
            __import__(module)
    label = f"{__name__}:HostileLabel@1"
    ratio = f"{__name__}:HostileRatio@1"

    def array(dtype: Any = "<i8", shape: Any = (1,), order: str = "C",
              data: Any = "AAAAAAAAAAA=") -> dict[str, Any]:
        return {"$t": "numpy.ndarray@1",
                "v": {"dtype": dtype, "shape": list(shape), "order": order, "data": data}}

    deep_dtype: Any = "<i8"
    for _ in range(200):
        deep_dtype = [["f", deep_dtype]]
    hostile: list[tuple[str, Any]] = [
        ("str subclass: an int value", {"$t": label, "v": 5}),
        ("str subclass: a null state", {"$t": label, "v": "x", "s": None}),
        ("str subclass: a state of fields set", {"$t": label, "v": "x", "s": {"set": []}}),
        ("str subclass: attributes not an object", {"$t": label, "v": "x", "s": {"attrs": 1}}),
        ("float subclass: an attribute it has no slot for",
         {"$t": ratio, "v": 1.5, "s": {"attrs": {"__class__": 1}}}),
        ("float subclass: a str value", {"$t": ratio, "v": "1.5"}),
        ("Color: text", {"$t": "pydantic_extra_types.Color@1", "v": "red"}),
        ("Color: a channel past 1", {"$t": "pydantic_extra_types.Color@1",
                                     "v": {"original": "red", "rgba": [9.0, 0.0, 0.0, None]}}),
        ("Color: a NaN channel", {"$t": "pydantic_extra_types.Color@1",
                                  "v": {"original": "red", "rgba": [0.0, 0.0, 0.0, "nan"]}}),
        ("Color: an original that is a number", {"$t": "pydantic_extra_types.Color@1",
                                                 "v": {"original": 5,
                                                       "rgba": [0.0, 0.0, 0.0, None]}}),
        ("semver: 10,000 digits", {"$t": "semver.Version@1", "v": "1" * 10_000 + ".0.0"}),
        ("semver: not a version", {"$t": "semver.Version@1", "v": "../../etc/passwd"}),
        ("ULID: past 128 bits", {"$t": "ulid.ULID@1", "v": "8ZZZZZZZZZZZZZZZZZZZZZZZZZ"}),
        ("ULID: lower case", {"$t": "ulid.ULID@1", "v": "01arz3ndektsv4rrffq69g5fav"}),
        ("ObjectId: 12 raw characters", {"$t": "bson.ObjectId@1", "v": "abcdefghijkl"}),
        ("ObjectId: upper case", {"$t": "bson.ObjectId@1", "v": "507F1F77BCF86CD799439011"}),
        ("v1 secret: a number", {"$t": "pydantic.v1.SecretStr@1", "v": 5}),
        ("v1 secret bytes: not base64", {"$t": "pydantic.v1.SecretBytes@1", "v": "!!"}),
        ("numpy: object dtype", array(dtype="|O")),
        ("numpy: object dtype by name", array(dtype="object")),
        ("numpy: object field", array(dtype=[["a", "|O"]])),
        ("numpy: a dtype name numpy does not write", array(dtype="int64")),
        ("numpy: a dtype 200 levels deep", array(dtype=deep_dtype)),
        ("numpy: 100,000 fields", array(dtype=[["f", "<i8"]] * 100_000)),
        ("numpy: 2**40 by 2**40 of 8 bytes", array(shape=(2**40, 2**40))),
        ("numpy: 2**31 of no size", array(dtype="|S0", shape=(2**31,), data="")),
        ("numpy: 65 dimensions", array(shape=[1] * 65)),
        ("numpy: a negative dimension", array(shape=(-1,))),
        ("numpy: a dimension of 10**30", array(shape=(10**30,))),
        ("numpy: text past the last code point", array(dtype="<U1", data="AAARAA==")),
        ("numpy: not base64", array(data="***")),
        ("numpy: order K", array(order="K")),
        ("numpy scalar: bytes of the wrong size",
         {"$t": "numpy.scalar@1", "v": {"dtype": "<f8", "data": "AAAA"}}),
        ("numpy scalar: a structured void of no size",
         {"$t": "numpy.scalar@1", "v": {"dtype": "|V0", "data": ""}}),
    ]
    return [Case("library values", name, lambda sb, d=data: refused(lambda: decode(d)))
            for name, data in hostile]


def _process_sweep(limit: int) -> list[Case]:
    """Tags naming every class and callable the process has defined (a sample of callables)."""
    cases: list[Case] = []
    classes: dict[str, type] = {}
    stack: list[type] = [BaseModel, enum.Enum, tuple]
    while stack:
        cls = stack.pop()
        try:
            subclasses: list[type] = type.__subclasses__(cls)
        except TypeError:
            continue
        stack.extend(subclasses)
        if auto_kind(cls) is not None and "<locals>" not in cls.__qualname__:
            classes.setdefault(auto_name(cls), cls)
    for name in sorted(classes):
        body: Any
        for body in ({}, {"__class__": "os:system"}, [], "x"):
            data = {"$t": f"{name}@1", "v": body}
            cases.append(Case("process sweep: defined classes", f"{name} {body!r}",
                              lambda sb, d=data: _typed_or_decoded(lambda: decode(d))))
    callables: list[str] = []
    for module_name, module in sorted(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in sorted(namespace.items(), key=lambda kv: str(kv[0])):
            if callable(value) and not isinstance(value, type):
                callables.append(f"{module_name}:{attr}")
    step = max(1, len(callables) // limit)
    for name in callables[::step][:limit]:
        data = {"$t": f"{name}@1", "v": "id"}
        cases.append(Case("process sweep: callables", name,
                          lambda sb, d=data: refused(lambda: decode(d))))
    return cases


def _method_cases() -> list[Case]:
    """Payloads that name methods and dunder attributes where field names are expected."""
    cases: list[Case] = []
    names = ["__class__", "__dict__", "__init__", "__new__", "__reduce__", "__reduce_ex__",
             "__getattr__", "__getattribute__", "__setattr__", "__del__", "__post_init__",
             "__call__", "__init_subclass__", "__slots__", "__weakref__", "model_post_init",
             "model_validate", "model_construct", "__pydantic_extra__",
             "__pydantic_fields_set__", "__pydantic_private__", "__pydantic_validator__",
             "_missing_", "_make", "system", "eval"]
    for attr in names:
        for target in (f"{__name__}:Strict", f"{__name__}:Trap", "hostile.Money",
                       "flujo.PipelineContext", "flujo.StepResult"):
            data = {"$t": f"{target}@1", "v": {attr: "os:system", "amount": "1",
                                                "currency": "EUR"}}
            cases.append(Case("methods named in the payload", f"{target} {attr}",
                              lambda sb, d=data: _no_calls(lambda: decode(d))))
        data = {"$t": f"{__name__}:Loose@1", "v": {attr: {"$t": "set@1", "v": [1]}}}
        cases.append(Case("methods named in the payload", f"Loose (extra=allow) {attr}",
                          lambda sb, d=data, a=attr: _loose_extra(d, a)))
    data = {"$t": f"{__name__}:Loose@1", "v": {"_fields_set": 5}}
    cases.append(Case("methods named in the payload", "Loose (extra=allow) _fields_set",
                      lambda sb, d=data: _loose_extra(d, "_fields_set")))
    value: Any
    for value in ("__class__", "DARK", "_missing_", "os:system", ["x"], {"k": 1}):
        data = {"$t": f"{__name__}:Shade@1", "v": value}
        cases.append(Case("methods named in the payload", f"Shade enum value {value!r}",
                          lambda sb, d=data: _typed_or_decoded(lambda: decode(d))))
    for value in ([1, 2], [1], [1, 2, 3], {"_make": 1}, "ab"):
        data = {"$t": f"{__name__}:Pair@1", "v": value}
        cases.append(Case("methods named in the payload", f"Pair NamedTuple {value!r}",
                          lambda sb, d=data: _typed_or_decoded(lambda: decode(d))))
    return cases


def _no_calls(action: Callable[[], Any]) -> str:
    before = len(CALLS)
    try:
        outcome = _typed_or_decoded(action)
    finally:
        if len(CALLS) != before:
            raise CheckFailed(f"decoding ran a type's own code: {CALLS[before:]}")
    return outcome


def _loose_extra(data: Any, attr: str) -> str:
    obj = _no_calls_value(lambda: decode(data))
    if type(obj) is not Loose:
        raise CheckFailed(f"decoded a {type(obj).__name__}, not Loose")
    if (obj.model_extra or {}).get(attr) != decode(data["v"][attr]):
        raise CheckFailed(f"the extra field {attr!r} was not kept as an extra field: "
                          f"extra={obj.model_extra!r:.80} fields_set="
                          f"{obj.__pydantic_fields_set__!r:.60}")
    obj.model_dump(exclude_unset=True)
    return "kept as an extra field"


def _no_calls_value(action: Callable[[], Any]) -> Any:
    before = len(CALLS)
    value = action()
    if len(CALLS) != before:
        raise CheckFailed(f"decoding ran a type's own code: {CALLS[before:]}")
    return value


MILLION = 1_000_000
P61 = 2**61 - 1


_M64 = 2**64
_X1, _X2, _X5 = 11400714785074694791, 14029467366897019727, 2870177450012600261


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & (_M64 - 1)


def colliding_pairs(n: int) -> list[tuple[int, int]]:
    """``n`` distinct pairs of small ints whose tuples share one hash (CPython's xxHash)."""
    pre = _rotl(12345 * pow(_X1, -1, _M64) % _M64, 64 - 31)
    inverse = pow(_X2, -1, _M64)
    pairs: list[tuple[int, int]] = []
    a = 0
    while len(pairs) < n:
        acc = _rotl((_X5 + hash(a) % _M64 * _X2) % _M64, 31) * _X1 % _M64
        lane = (pre - acc) * inverse % _M64
        b = lane - _M64 if lane >= 2**63 else lane
        if -P61 < b < P61 and b != -1:
            pairs.append((a, b))
        a += 1
    return pairs


def _size_cases() -> list[Case]:
    big: list[tuple[str, Callable[[], Any]]] = [
        ("list of 1,000,000 ints", lambda: list(range(MILLION))),
        ("dict of 1,000,000 keys", lambda: {f"k{i}": i for i in range(MILLION)}),
        ("1,000,000 tagged decimals", lambda: [{"$t": "decimal@1", "v": f"{i}.5"}
                                               for i in range(MILLION)]),
        ("set of 1,000,000 strings", lambda: {"$t": "set@1",
                                              "v": [f"s{i}" for i in range(MILLION)]}),
        ("dict@1 of 1,000,000 int keys", lambda: {"$t": "dict@1",
                                                  "v": [[i, i] for i in range(MILLION)]}),
        ("50 MB string", lambda: "x" * 50_000_000),
        ("int with 1,000,000 hex digits", lambda: {"$t": "int@1", "v": "0x" + "f" * MILLION}),
        ("decimal with 1,000,000 digits", lambda: {"$t": "decimal@1", "v": "9" * MILLION}),
        ("decimal 1E+999999999999999999", lambda: {"$t": "decimal@1",
                                                   "v": "1E+999999999999999999"}),
        ("bytes of 30 MB", lambda: {"$t": "bytes@1",
                                    "v": base64.b64encode(b"\0" * 30_000_000).decode()}),
    ]
    cases = [Case("huge inputs", name, lambda sb, make=make: describe(decode(make())))
             for name, make in big]
    cases.append(Case("huge inputs", "JSON text: list of 1,000,000 ints",
                      lambda sb: describe(deserialize_from_json(
                          json.dumps(list(range(MILLION)))))))
    deep: list[tuple[str, Callable[[], Any]]] = [
        ("list nested 100,000 levels", lambda: nested_list(100_000)),
        ("dict nested 100,000 levels", lambda: nested_dict(100_000)),
        ("tuple@1 nested 100,000 levels", lambda: nested_tag(100_000, "tuple@1",
                                                              lambda d: [d])),
        ("dict@1 nested 100,000 levels", lambda: nested_tag(100_000, "dict@1",
                                                             lambda d: [["k", d]])),
        ("frozenset@1 nested 100,000 levels", lambda: nested_tag(100_000, "frozenset@1",
                                                                 lambda d: [d])),
        ("model nested 100,000 levels", lambda: nested_tag(
            100_000, "hostile.Versioned@2", lambda d: {"value": d})),
        ("migrated type holding 100,000 levels", lambda: {
            "$t": "hostile.Versioned@1", "v": nested_list(100_000)}),
        ("custom type holding 100,000 levels", lambda: {
            "$t": "hostile.Money@1", "v": nested_list(100_000)}),
        ("datetime holding 100,000 levels", lambda: {"$t": "datetime@1",
                                                     "v": nested_list(100_000)}),
    ]
    for name, make in deep:
        cases.append(Case("deep nesting", name,
                          lambda sb, make=make: refused(lambda: decode(make()))))
    for depth in (100_000, 1_000):
        text = "[" * depth + "1" + "]" * depth
        cases.append(Case("deep nesting", f"JSON text nested {depth} levels",
                          lambda sb, t=text: refused(lambda: deserialize_from_json(t))))
    # Equal-hash keys make building a set or dict quadratic (int hashes are not randomized).
    flood = [{"$t": "int@1", "v": hex(P61 * (i + 2**64))} for i in range(40_000)]
    cases.append(Case("hash flooding", "set of 40,000 ints with one hash",
                      lambda sb: _typed_or_decoded(lambda: decode({"$t": "set@1", "v": flood})),
                      timeout=5.0))
    cases.append(Case("hash flooding", "dict@1 with 40,000 int keys with one hash",
                      lambda sb: _typed_or_decoded(lambda: decode(
                          {"$t": "dict@1", "v": [[k, 1] for k in flood]})),
                      timeout=5.0))
    pairs = colliding_pairs(40_000)
    cases.append(Case("hash flooding", "set of 40,000 pairs of small ints with one hash",
                      lambda sb: _typed_or_decoded(lambda: decode({"$t": "set@1", "v": [
                          {"$t": "tuple@1", "v": list(p)} for p in pairs]})), timeout=5.0))
    cases.append(Case("hash flooding", "typed form of a model with a set field, 40,000 pairs",
                      lambda sb: _typed_or_decoded(lambda: decode({
                          "$t": f"{__name__}:PairSet@1",
                          "v": [{"pairs": [list(p) for p in pairs]}]})), timeout=5.0))
    odd: list[Any] = [
        {"$t": "timedelta@1", "v": [10**12, 0, 0]}, {"$t": "timedelta@1", "v": [1, 2]},
        {"$t": "datetime@1", "v": "10000-01-01T00:00:00"},
        {"$t": "datetime@1", "v": "2024-01-01T00:00:00+01:00[../../../../etc/passwd]"},
        {"$t": "datetime@1", "v": "2024-01-01T00:00:00+01:00[/etc/localtime]"},
        {"$t": "datetime@1", "v": "2024-01-01T00:00:00[Europe/Paris]"},
        {"$t": "datetime@1", "v": "2024-01-01T00:00:00+01:00[tzname=" + "x" * MILLION + "]"},
        {"$t": "time@1", "v": "25:00"}, {"$t": "date@1", "v": "2024-02-30"},
        {"$t": "deque@1", "v": {"items": [], "maxlen": -1}},
        {"$t": "deque@1", "v": {"items": [], "maxlen": 2**100}},
        {"$t": "deque@1", "v": {"items": []}}, {"$t": "defaultdict@1", "v": {"items": []}},
        {"$t": "defaultdict@1", "v": {"factory": 5, "items": []}},
        {"$t": "complex@1", "v": ["1", "2"]}, {"$t": "complex@1", "v": [1.0]},
        {"$t": "float@1", "v": "1e999"}, {"$t": "float@1", "v": "NaN"},
        {"$t": "int@1", "v": "12"}, {"$t": "int@1", "v": "0x" + "g"},
        {"$t": "bytes@1", "v": "not base64!"}, {"$t": "uuid@1", "v": "x" * 10_000},
        {"$t": "set@1", "v": [[1], [2]]}, {"$t": "set@1", "v": [{"$t": "set@1", "v": []}]},
        {"$t": "counter@1", "v": [["a", "not a number"]]},
        {"$t": "path.posix@1", "v": "/" + "../" * 10_000},
    ]
    for number, data in enumerate(odd):
        cases.append(Case("malformed values", f"value {number}: {str(data)[:60]}",
                          lambda sb, d=data: _typed_or_decoded(lambda: decode(d))))
    zone = {"$t": "datetime@1", "v": "2024-01-01T00:00:00+01:00[Europe/Nowhere]"}
    cases.append(Case("malformed values", "datetime in an unknown zone",
                      lambda sb: _typed_or_decoded(lambda: decode(zone))))
    factory = {"$t": "defaultdict@1", "v": {"factory": f"{__name__}:Trap", "items": [["k", 1]]}}
    cases.append(Case("methods named in the payload", "defaultdict factory naming a dataclass",
                      lambda sb: _no_calls(lambda: decode(factory))))
    not_json: list[Any] = [b"bytes", {1, 2}, object(), {1: "int key"}, (1, 2), 1 + 2j,
                           Decimal(1), float("nan"), {"a": object()}, [b"x"]]
    for number, data in enumerate(not_json):
        cases.append(Case("not JSON data", f"python value {number}: {type(data).__name__}",
                          lambda sb, d=data: _typed_or_decoded(lambda: decode(d))))
    return cases


# -- stored records ----------------------------------------------------------------------------

@dataclass
class Records:
    """Genuine records, made once in the driver (so every worker sees the same bytes)."""

    plain: bytes
    plain_state: dict[str, Any]
    zlib: bytes
    encrypted_a: bytes
    encrypted_a_old: bytes
    encrypted_b: bytes
    encrypted_state_a: dict[str, Any]
    encrypted_zstd: bytes
    bombs: dict[str, bytes] = field(default_factory=dict)


def make_records(bomb_bytes: int) -> Records:
    async def build() -> Records:
        plain = InMemoryBackend()
        packed = InMemoryBackend(compression="zlib")
        sealed = InMemoryBackend(encryption=ENCRYPTION, compression="zlib")
        sealed_zstd = InMemoryBackend(encryption=ENCRYPTION, compression="zstd")
        state = state_for("r", total=Decimal("9.90"), at=datetime(2026, 3, 1, tzinfo=UTC),
                          tags={"a", "b"}, money=Money(Decimal("1.5"), "EUR"))
        await plain.save_state("r", state)
        await packed.save_state("r", state)
        await sealed.save_state("a", state_for("a", secret="A", n=1))
        old = sealed.raw_records()["a"]
        await sealed.save_state("a", state_for("a", secret="A", n=2))
        await sealed.save_state("b", state_for("b", secret="B", n=1))
        await sealed_zstd.save_state("z", state_for("z", secret="Z"))
        record = await plain.load_record("r")
        record_a = await sealed.load_record("a")
        assert record is not None and record_a is not None
        return Records(plain.raw_records()["r"], record.state.to_dict(),
                       packed.raw_records()["r"], sealed.raw_records()["a"], old,
                       sealed.raw_records()["b"], record_a.state.to_dict(),
                       sealed_zstd.raw_records()["z"])

    records = asyncio.run(build())
    records.bombs = _bombs(bomb_bytes)
    return records


def _bombs(size: int) -> dict[str, bytes]:
    import zstandard

    chunk = b"\0" * (1 << 20)
    deflate = zlib.compressobj(9)
    parts = [deflate.compress(chunk) for _ in range(size >> 20)]
    zlib_bomb = b"".join(parts) + deflate.flush()
    zstd_out = zstandard.ZstdCompressor(level=3).compressobj()
    zparts = [zstd_out.compress(chunk) for _ in range(size >> 20)]
    zstd_bomb = b"".join(zparts) + zstd_out.flush()
    json_bomb = zlib.compress(b'{"run_id":"' + b"x" * (size // 4) + b'"}', 9)
    return {"zlib": zlib_bomb, "zstd": zstd_bomb, "zlib JSON string": json_bomb,
            "zlib then trailing frame": zlib.compress(b"{}") + zlib_bomb,
            "zstd two frames": zstandard.ZstdCompressor().compress(b"{}") + zstd_bomb}


def _envelope(payload: Any, *, codec: str = "json", run_id: str = "RID", key_id: Any = None,
              **header: Any) -> bytes:
    doc = {"format": "flujo.state", "envelope_version": 1, "run_id": run_id, "revision": 1,
           "state_version": 1, "manifest": {}, "pipeline_name": "hostile",
           "status": "running", "created_at": "2024-01-01T00:00:00.000000+00:00",
           "updated_at": "2024-01-01T00:00:00.000000+00:00", "codec": codec,
           "key_id": key_id, **header, "payload": payload}
    return json.dumps(doc, separators=(",", ":")).encode()


def _retarget(raw: bytes, run_id: str) -> bytes:
    """The same record bytes, with its run id (header and payload) renamed."""
    doc = json.loads(raw)
    doc["run_id"] = run_id
    if isinstance(doc.get("payload"), dict):
        doc["payload"]["run_id"] = run_id
    return json.dumps(doc, separators=(",", ":")).encode()


def _load_placed(sb: Sandbox, kind: str, raw: bytes, *, encrypted: bool = False,
                 rename: bool = True, expect: dict[str, Any] | None = None,
                 run_id: str | None = None) -> str:
    """Store ``raw`` (under ``run_id``, else a fresh id it is renamed to) and load it."""
    if run_id is not None:
        data = raw
    else:
        run_id = sb.fresh_id()
        data = _retarget(raw, run_id) if rename else raw
    sb.place(kind, run_id, data, encrypted=encrypted)
    state = sb.load(kind, run_id, encrypted=encrypted)
    if state is None:
        raise CheckFailed("the placed record was not found")
    if expect is not None:
        want = {**expect, "run_id": state.run_id}
        found = difference(state.to_dict(), want)
        if found:
            raise CheckFailed(f"decoded a different state from a tampered encrypted record: "
                              f"{found}")
        return "decoded the identical state"
    return "decoded"


def _record_cases(records: Records) -> list[Case]:
    cases: list[Case] = []
    kinds = ("memory", "file", "sqlite")

    def add(category: str, name: str, run: Callable[[Sandbox, str], str], **kw: Any) -> None:
        for kind in kinds:
            cases.append(Case(category, f"{name} [{kind}]",
                              lambda sb, k=kind, r=run: r(sb, k), writes=True, **kw))

    malformed: list[tuple[str, bytes]] = [
        ("empty", b""), ("not JSON", b"not json"), ("JSON array", b"[1,2]"),
        ("JSON string", b'"x"'), ("null", b"null"), ("BOM", b"\xef\xbb\xbf" + records.plain),
        ("UTF-16", records.plain.decode().encode("utf-16")),
        ("invalid UTF-8", records.plain.replace(b'"hostile"', b'"\xff\xfe"')),
        ("lone surrogate escape", records.plain.replace(b'"hostile"', b'"\\ud800"')),
        ("NaN literal", records.plain.replace(b'"revision":1', b'"revision":NaN')),
        ("huge revision", records.plain.replace(b'"revision":1', b'"revision":' + b"9" * 5000)),
        ("duplicate keys", records.plain.replace(b'{"format"', b'{"run_id":"zzz","format"')),
        ("truncated", records.plain[: len(records.plain) // 2]),
        ("trailing garbage", records.plain + b"garbage"),
        ("two documents", records.plain + records.plain),
    ]
    for name, raw in malformed:
        add("malformed records", name,
            lambda sb, k, r=raw: _typed_or_decoded(lambda: _load_placed(sb, k, r, rename=False)))
    header_edits: list[tuple[str, dict[str, Any]]] = [
        ("format", {"format": "pickle"}), ("envelope_version 2", {"envelope_version": 2}),
        ("envelope_version 0", {"envelope_version": 0}),
        ("envelope_version '1'", {"envelope_version": "1"}),
        ("envelope_version true", {"envelope_version": True}),
        ("revision 0", {"revision": 0}), ("revision -1", {"revision": -1}),
        ("revision 2**70", {"revision": 2**70}), ("state_version 99", {"state_version": 99}),
        ("manifest future", {"manifest": {"datetime": 99}}),
        ("manifest names os:system", {"manifest": {"os:system": 1}}),
        ("manifest not ints", {"manifest": {"set": "1"}}),
        ("codec lzma", {"codec": "json+lzma"}), ("codec pickle", {"codec": "pickle"}),
        ("created_at garbage", {"created_at": "yesterday"}),
        ("naive created_at", {"created_at": "2024-01-01T00:00:00"}),
        ("extra field", {"exploit": "os.system('id')"}),
        ("pipeline_name differs", {"pipeline_name": "other"}),
        ("status differs", {"status": "completed"}),
        ("status unknown", {"status": "hacked"}),
        ("key_id set on plaintext", {"key_id": "k1"}),
    ]
    plain_doc = json.loads(records.plain)
    for name, edit in header_edits:
        raw = json.dumps({**plain_doc, **edit}, separators=(",", ":")).encode()
        add("malformed records", f"header: {name}",
            lambda sb, k, r=raw: _typed_or_decoded(lambda: _load_placed(sb, k, r)))
    payload = plain_doc["payload"]
    payload_edits: list[tuple[str, Any]] = [
        ("payload a list", [1, 2]), ("payload a string", "x"), ("payload null", None),
        ("step index -1", {**payload, "current_step_index": -1}),
        ("step index huge", {**payload, "current_step_index": 2**70}),
        ("step_history a string", {**payload, "step_history": "x"}),
        ("context a list", {**payload, "pipeline_context": [1]}),
        ("run id elsewhere", {**payload, "run_id": "someone-else"}),
        ("payload tag os:system", {**payload, "last_step_output": {"$t": "os:system@1",
                                                                   "v": "id"}}),
        ("payload 1000 levels", {**payload, "last_step_output": "@@DEEP@@"}),
        ("payload 1,000,000 items", {**payload, "last_step_output": list(range(MILLION))}),
    ]
    for name, body in payload_edits:
        raw = json.dumps({**plain_doc, "payload": body}, separators=(",", ":")).encode()
        raw = raw.replace(b'"@@DEEP@@"', b"[" * 1000 + b"1" + b"]" * 1000)
        add("malformed records", f"payload: {name}",
            lambda sb, k, r=raw: _typed_or_decoded(lambda: _load_placed(sb, k, r, run_id="r")))
    deep = b"[" * 100_000 + b"1" + b"]" * 100_000
    deep_long = b"[" * 100_000 + b"1234567890123456789" + b"]" * 100_000
    for name, body in (("100,000 levels", deep), ("100,000 levels, long number", deep_long)):
        raw = records.plain.replace(b'"payload":', b'"payload":' + body + b',"x":', 1)
        raw = raw[: raw.index(b',"x":')] + b"}"
        add("deep nesting", f"record payload {name}",
            lambda sb, k, r=raw: refused(lambda: _load_placed(sb, k, r, rename=False)))
    legacy: list[dict[str, Any]] = [
        {"run_id": "RID", "current_step_index": -5}, {"run_id": "RID", "status": "weird"},
        {"run_id": "RID", "step_history": "x"}, {"run_id": "RID", "pipeline_context": 5},
        {"run_id": "RID", "pipeline_context": {"$t": "os:system@1", "v": "id"}},
        {"run_id": 5, "status": "running"}, {"run_id": "RID", "created_at": "garbage",
                                             "status": "running"},
    ]
    for number, doc in enumerate(legacy):
        raw = json.dumps(doc).encode()
        add("malformed records", f"earlier-flujo record {number}",
            lambda sb, k, r=raw: _typed_or_decoded(lambda: _load_placed(sb, k, r)))
    # plaintext bit flips: no integrity without encryption, but never an untyped error
    for position in range(0, len(records.plain), 3):
        flipped = bytearray(records.plain)
        flipped[position] ^= 1 << (position % 8)
        cases.append(Case("bit flips (plaintext)", f"byte {position}",
                          lambda sb, r=bytes(flipped): _typed_or_decoded(
                              lambda: _load_placed(sb, "memory", r, rename=False)),
                          writes=True))
    cases += _encryption_cases(records)
    for name, blob in records.bombs.items():
        for codec in ("json+zlib", "json+zstd"):
            if ("zstd" in name) != (codec == "json+zstd"):
                continue
            raw = _envelope(base64.b64encode(blob).decode(), codec=codec)
            cases.append(Case("decompression bombs", f"{name} ({len(blob)} bytes)",
                              lambda sb, r=raw: refused(
                                  lambda: _load_placed(sb, "memory", r)), writes=True,
                              isolate=True))
    cases.append(Case("decompression bombs", "zlib bomb, encrypted with the right key",
                      lambda sb: _encrypted_bomb(sb, records), writes=True, isolate=True))
    for number, text in enumerate(["!!!!", "QQ", "QUJD\n", "QUJD" * 3 + "=", "\u00e9"]):
        raw = _envelope(text, codec="json+zlib")
        cases.append(Case("malformed records", f"bad base64 {number}",
                          lambda sb, r=raw: refused(lambda: _load_placed(sb, "memory", r)),
                          writes=True))
    return cases


def _encrypted_bomb(sb: Sandbox, records: Records) -> str:
    from flujo.state._envelope_codec import associated_data

    header = json.loads(_envelope("", codec="json+zlib+aesgcm", key_id="k1"))
    run_id = sb.fresh_id()
    header["run_id"] = run_id
    blob = ENCRYPTION.encrypt(records.bombs["zlib"], associated_data(header), key_id="k1")
    header["payload"] = base64.b64encode(blob).decode()
    sb.place("memory", run_id, json.dumps(header).encode(), encrypted=True)
    return refused(lambda: sb.load("memory", run_id, encrypted=True))


def _encryption_cases(records: Records) -> list[Case]:
    cases: list[Case] = []
    a, b = records.encrypted_a, records.encrypted_b
    doc_a, doc_b = json.loads(a), json.loads(b)
    expect = records.encrypted_state_a

    def sealed_case(name: str, raw: bytes, *, tolerate_decode: bool = False,
                    kinds: tuple[str, ...] = ("memory", "file", "sqlite")) -> None:
        """Store ``raw`` as run "a" of an encrypting store and load it."""
        for kind in kinds:
            def run(sb: Sandbox, k: str = kind, r: bytes = raw) -> str:
                def action() -> str:
                    return _load_placed(sb, k, r, encrypted=True, expect=expect, run_id="a")
                return _typed_or_decoded(action) if tolerate_decode else refused(action)
            cases.append(Case("encrypted records", f"{name} [{kind}]", run, writes=True))

    # run "a"'s record placed under other run ids, with and without its header rewritten
    cases.append(Case("encrypted records", "record of run a stored as another run",
                      lambda sb: refused(lambda: _swap(sb, a, rewrite=False)), writes=True))
    cases.append(Case("encrypted records", "record of run a, header renamed to another run",
                      lambda sb: refused(lambda: _swap(sb, a, rewrite=True)), writes=True))
    payload_swap = json.dumps({**doc_a, "payload": doc_b["payload"]}).encode()
    sealed_case("payload of run b under the header of run a", payload_swap)
    for edit in ({"key_id": "k2"}, {"key_id": "nope"}, {"key_id": None},
                 {"codec": "json+aesgcm"}, {"codec": "json+zstd+aesgcm"}, {"codec": "json+zlib"},
                 {"manifest": {"set": 1}}, {"state_version": 2}, {"format": "flujo.state2"}):
        sealed_case(f"header edited: {edit}", json.dumps({**doc_a, **edit}).encode())
    sealed_case("replaced by plaintext", records.plain.replace(b'"run_id":"r"', b'"run_id":"a"'))
    ciphertext = base64.b64decode(doc_a["payload"])
    for cut in sorted({0, 1, 11, 12, 27, 28, len(ciphertext) // 2, len(ciphertext) - 1}):
        body = base64.b64encode(ciphertext[:cut]).decode()
        sealed_case(f"ciphertext truncated to {cut} bytes",
                    json.dumps({**doc_a, "payload": body}).encode())
    for cut in range(0, len(a), 17):
        sealed_case(f"record truncated at byte {cut}", a[:cut], kinds=("memory",))
    for position in range(len(ciphertext)):
        flipped = bytearray(ciphertext)
        flipped[position] ^= 1 << (position % 8)
        body = base64.b64encode(bytes(flipped)).decode()
        sealed_case(f"ciphertext bit flip at {position}",
                    json.dumps({**doc_a, "payload": body}).encode(), kinds=("memory",))
    for position in range(len(a)):
        flipped = bytearray(a)
        flipped[position] ^= 1 << (position % 8)
        # unbound header fields (revision, timestamps) may still decode: to the same state
        sealed_case(f"record bit flip at byte {position}", bytes(flipped),
                    tolerate_decode=True, kinds=("memory",))
    cases.append(Case("encrypted records", "rollback to an older record of the same run",
                      lambda sb: _rollback(sb, records), writes=True))
    return cases


def _swap(sb: Sandbox, raw: bytes, *, rewrite: bool) -> Any:
    run_id = sb.fresh_id()
    data = raw
    if rewrite:
        doc = json.loads(raw)
        doc["run_id"] = run_id
        data = json.dumps(doc).encode()
    sb.place("file", run_id, data, encrypted=True)
    return sb.load("file", run_id, encrypted=True)


def _rollback(sb: Sandbox, records: Records) -> str:
    """Documented limitation: an older record of the same run authenticates (not prevented)."""
    sb.place("memory", "a", records.encrypted_a_old, encrypted=True)
    state = sb.load("memory", "a", encrypted=True)
    assert state is not None
    n = state.pipeline_context["n"]
    return f"decoded the older state (n={n}): rollback is not prevented"


# -- run ids -------------------------------------------------------------------------------------

HOSTILE_RUN_IDS: list[Any] = [
    "..", ".", "../x", "../../etc/passwd", "/etc/passwd", "a/b", "a\\b", "..\\..\\x", "a\x00b",
    "\x00", "x" * 10_000, "\u00e9" * 101, "x" * 201, "\udcff", "run\ud800", b"\xff\xfe",
    bytearray(b"run"), "line\nbreak", "tab\there", " lead", "trail ", "run\x7f", "run\x85",
    "\u2028", "", None, 5, 5.0, ["run"], ".hidden", ".locks",
]
ODD_BUT_VALID: list[str] = ["a:b", "\u540d\u524d", "x" * 200, "CON", "a.json", "run id",
                            "\u00e9" * 100, "-rf", "*", "$(id)", "%2e%2e%2f",
                            "'; DROP TABLE flujo_state;--"]


def _run_id_cases(postgres: bool) -> list[Case]:
    cases: list[Case] = []
    kinds = ["memory", "file", "sqlite"] + (["postgres"] if postgres else [])
    for kind in kinds:
        for run_id in HOSTILE_RUN_IDS:
            for op in ("save", "load", "delete", "claim", "runner"):
                if op == "runner" and run_id is None:
                    continue  # run_id=None asks the runner for a fresh id
                cases.append(Case("run ids", f"{op} {run_id!r:.40} [{kind}]",
                                  lambda sb, k=kind, r=run_id, o=op: refused(
                                      lambda: _run_id_op(sb, k, r, o)),
                                  writes=True))
        for run_id in ODD_BUT_VALID:
            cases.append(Case("run ids", f"round trip {run_id!r:.40} [{kind}]",
                              lambda sb, k=kind, r=run_id: _round_trip_id(sb, k, r),
                              writes=True))
    return cases


def _backend(sb: Sandbox, kind: str) -> StateBackend:
    if kind == "postgres":
        assert sb.postgres is not None
        dsn, schema = sb.postgres
        if "postgres" not in sb.plain:
            sb.plain["postgres"] = PostgresBackend(dsn, schema=schema, min_size=1, max_size=1)
        if sb.audit:
            sb.audit.sockets_ok = True
    return sb.plain[kind]


def _run_id_op(sb: Sandbox, kind: str, run_id: Any, op: str) -> Any:
    backend = _backend(sb, kind)
    if op == "save":
        state = WorkflowState.model_construct(run_id=run_id, pipeline_name="hostile",
                                              pipeline_context={}, step_history=[])
        return sb.run(backend.save_state(run_id, state))
    if op == "load":
        return sb.run(backend.load_record(run_id))
    if op == "delete":
        sb.run(backend.delete_state(run_id))
        return "deleted"
    if op == "claim":
        async def claim() -> str:
            async with backend.claim(run_id):
                return "claimed"
        return sb.run(claim())
    pipeline = Step.from_callable(lambda x: x, name="echo")
    return sb.run(Flujo(pipeline, state_backend=backend).run_async("x", run_id=run_id))


def _round_trip_id(sb: Sandbox, kind: str, run_id: str) -> str:
    backend = _backend(sb, kind)
    result = sb.run(Flujo(Step.from_callable(lambda x: x, name="echo"), context_model=
                          PipelineContext, state_backend=backend).run_async("x", run_id=run_id))
    record = sb.run(backend.load_record(run_id))
    if not result.success or record is None or record.state.run_id != run_id:
        raise CheckFailed(f"run id {run_id!r} did not round trip")
    sb.run(backend.delete_state(run_id))
    if kind == "file":
        names = {p.name for p in (sb.root / "files").iterdir()}
        if f"{run_id}.json" in names:
            raise CheckFailed("the record file is still there after delete_state")
    return "round trip"


# -- refused saves never write -----------------------------------------------------------------

class Unstorable:
    pass


@dataclass(frozen=True)
class HashedByName:
    name: str
    holder: Any = field(default=None, compare=False)


def _unbuildable_cycle() -> Any:
    """A set element hashed by its contents inside itself: it would be hashed before its
    contents exist when read back (docs/format.md), so the save is refused."""
    holder: list[Any] = []
    element = HashedByName("k", holder)
    holder.append({element})
    return element


def _save_cases() -> list[Case]:
    huge_bad = [*range(MILLION), Unstorable()]
    values: list[tuple[str, Callable[[], Any]]] = [
        ("unserializable value after 1,000,000 items", lambda: huge_bad),
        ("nested 100,000 levels", lambda: nested_list(100_000)),
        ("a cycle that cannot be rebuilt", _unbuildable_cycle),
        ("over max_payload_bytes", lambda: "x" * (2 * 1024 * 1024)),
        ("custom serializer output violating its schema",
         lambda: Money(Decimal(1), 5)),  # type: ignore[arg-type]  # the hostile value
        ("dict key unstorable", lambda: {Unstorable(): 1}),
    ]
    cases: list[Case] = []
    for kind in ("memory", "file", "sqlite"):
        for name, make in values:
            cases.append(Case("refused saves", f"{name} [{kind}]",
                              lambda sb, k=kind, m=make: _refused_save(sb, k, m), writes=True))
    return cases


def _refused_save(sb: Sandbox, kind: str, make: Callable[[], Any]) -> str:
    backend = sb.plain[kind]
    run_id = sb.fresh_id("save")
    sb.run(backend.save_state(run_id, state_for(run_id, n=1)))
    before = sb.stored(kind, run_id)
    limited = backend
    if isinstance(backend, FileBackend):
        limited = FileBackend(backend.path, fsync=False, max_payload_bytes=1024 * 1024)
    elif isinstance(backend, SQLiteBackend):
        limited = SQLiteBackend(backend.path, synchronous="NORMAL", max_payload_bytes=1024 * 1024)
    else:
        limited.codec.max_payload_bytes = 1024 * 1024
    try:
        try:
            sb.run(limited.save_state(run_id, state_for(run_id, value=make())))
        except FlujoError as exc:
            error = type(exc).__name__
        else:
            raise CheckFailed("the save was accepted")
    finally:
        if isinstance(backend, InMemoryBackend):
            backend.codec.max_payload_bytes = 64 * 1024 * 1024
    if sb.stored(kind, run_id) != before:
        raise CheckFailed("a refused save changed the stored record")
    if kind == "file" and any(p.name.endswith(".tmp") for p in (sb.root / "files").iterdir()):
        raise CheckFailed("a refused save left a temporary file")
    state = sb.load(kind, run_id)
    if state is None or state.pipeline_context != {"n": 1}:
        raise CheckFailed("the previous state does not load back")
    return f"refused with {error}; previous record intact"


# -- a hostile store directory: links, FIFOs, huge files, odd names (issue 14) --------------

def _locks_replaced_by_link(store: Path, outside: Path) -> None:
    os.rmdir(store / ".locks")
    (store / ".locks").symlink_to(outside)


def _planted(sb: Sandbox, plant: Callable[[Path, Path], None],
             act: Callable[[FileBackend], Any], *, fresh_backend: bool = False) -> str:
    """Plant something in a new file store (``plant(store, outside)``), then ``act`` on it:
    it must be refused with a FlujoError, and nothing outside the store may appear or
    change."""
    store, outside = sb.root / sb.fresh_id("store"), sb.root / sb.fresh_id("outside")
    outside.mkdir()
    (outside / "victim").write_text("victim")
    backend = None if fresh_backend else FileBackend(store, fsync=False)
    if backend is not None:  # a store in use: a first write made its directory and .locks
        sb.run(backend.save_state("seed", {"pipeline_context": {}, "status": "running"}))
        sb.run(backend.delete_state("seed"))
    store.mkdir(exist_ok=True)
    audit = sb.audit
    active = audit.active if audit else False
    if audit:
        audit.active = False  # planting is the attacker's doing, not flujo's
    try:
        plant(store, outside)
    finally:
        if audit:
            audit.active = active
    try:
        outcome = refused(lambda: act(backend if backend is not None
                                      else FileBackend(store, fsync=False)))
    finally:
        found = sorted(p.name for p in outside.iterdir())
        if found != ["victim"] or (outside / "victim").read_text() != "victim":
            raise CheckFailed(f"a file outside the store was created or changed: {found}")
    return outcome


def _store_cases() -> list[Case]:
    state = {"pipeline_context": {"n": 1}, "status": "running"}
    giga = 8 * 1024**3

    def sparse(path: Path) -> None:
        with open(path, "wb") as handle:
            handle.truncate(giga)

    plants: list[tuple[str, Callable[[Path, Path], None], str, bool]] = [
        ("write lock is a link out", lambda s, o: (s / ".locks" / "r.write").symlink_to(
            o / "x"), "save", False),
        ("claim lock is a link out", lambda s, o: (s / ".locks" / "r.claim").symlink_to(
            o / "x"), "claim", False),
        ("write lock is a link to a victim", lambda s, o: (s / ".locks" / "r.write")
         .symlink_to(o / "victim"), "delete", False),
        (".locks is a link to a victim dir", _locks_replaced_by_link, "save", False),
        (".locks is a link, at the first write", lambda s, o: (s / ".locks").symlink_to(o),
         "save", True),
        ("record is a link to /dev/zero", lambda s, o: (s / "r.json").symlink_to("/dev/zero"),
         "load", False),
        ("record is a link out", lambda s, o: (s / "r.json").symlink_to(o / "victim"),
         "save", False),
        ("record is a FIFO", lambda s, o: os.mkfifo(s / "r.json"), "load", False),
        ("record is a FIFO, listed", lambda s, o: os.mkfifo(s / "r.json"), "list", False),
        ("record is an 8 GiB sparse file", lambda s, o: sparse(s / "r.json"), "load", False),
        ("record is a directory", lambda s, o: (s / "r.json").mkdir(), "load", False),
    ]
    actions: dict[str, Callable[[Sandbox, FileBackend], Any]] = {
        "save": lambda sb, b: sb.run(b.save_state("r", state)),
        "delete": lambda sb, b: sb.run(b.delete_state("r")),
        "load": lambda sb, b: sb.run(b.load_record("r")),
        "list": lambda sb, b: sb.run(b.list_runs()),
        "claim": lambda sb, b: sb.run(_claim_once(b)),
    }
    cases = [Case("hostile store directory", name,
                  lambda sb, p=plant, a=actions[act], f=fresh: _planted(
                      sb, p, lambda b: a(sb, b), fresh_backend=f), writes=True, timeout=20)
             for name, plant, act, fresh in plants]
    for name in (".r.json.99999999999999999999.x.tmp", ".r.json.-1.x.tmp", ".tmp", "..tmp"):
        cases.append(Case("hostile store directory", f"temporary file named {name!r}",
                          lambda sb, n=name: _odd_temp_file(sb, n), writes=True))
    return cases


async def _claim_once(backend: FileBackend) -> None:
    async with backend.claim("r"):
        pass


def _odd_temp_file(sb: Sandbox, name: str) -> str:
    store = sb.root / sb.fresh_id("store")
    store.mkdir()
    (store / name).write_bytes(b"x")
    os.utime(store / name, (0, 0))
    backend = FileBackend(store, fsync=False)
    # the first write tidies what killed writers left: never a file whose name names none
    sb.run(backend.save_state("r", {"pipeline_context": {"n": 1}, "status": "running"}))
    if not (store / name).exists():
        raise CheckFailed("a temporary file whose name names no writer was removed")
    return "opened, the file kept"


def _container_cases() -> list[Case]:
    """Records whose parsed form costs far more than their size ([[],[],...]) are refused
    before parsing, on every store, compressed or inline, plain or encrypting."""
    cases: list[Case] = []
    for kind in ("memory", "file", "sqlite"):
        cases.append(Case("container bombs", f"inline JSON of 6,000,000 lists [{kind}]",
                          lambda sb, k=kind: refused(lambda: _load_placed(
                              sb, k, _many_lists(), rename=False, run_id="RID")),
                          writes=True, timeout=30))
        cases.append(Case("container bombs", f"zlib payload of 21,000,000 lists [{kind}]",
                          lambda sb, k=kind: refused(lambda: _load_placed(
                              sb, k, _many_lists_zlib(),
                              rename=False, run_id="RID")),
                          writes=True, timeout=30))
        cases.append(Case("container bombs", f"plaintext in an encrypting store [{kind}]",
                          lambda sb, k=kind: refused(lambda: _load_placed(
                              sb, k, _many_lists(), rename=False, run_id="RID",
                              encrypted=True)),
                          writes=True, timeout=30))
    return cases


@functools.cache
def _many_lists() -> bytes:
    return _envelope_raw(b"[" + b"[]," * (6 * MILLION) + b"[]]")  # 18 MB: 6,000,000 lists


@functools.cache
def _many_lists_zlib() -> bytes:  # 20 KB, inflating to 63 MB: 21,000,000 lists
    blob = zlib.compress(b"[" + b"[]," * (21 * MILLION) + b"[]]", 9)
    return _envelope_raw(b'"' + base64.b64encode(blob) + b'"', "json+zlib")


def _envelope_raw(payload: bytes, codec: str = "json") -> bytes:
    """A record around the JSON text ``payload``, built as bytes (never parsed here)."""
    head = _envelope("@@PAYLOAD@@", codec=codec)
    return head.replace(b'"@@PAYLOAD@@"', payload)


# -- hostile terminal text: what `flujo state` shows of a store (issue 14) ---------------------

#: Stored text aimed at the operator's terminal.
TERMINAL_TEXTS: dict[str, str] = {
    "OSC 52 clipboard write": "\x1b]52;c;aGVsbG8=\x07",
    "OSC 8 hyperlink": "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "CSI clear screen, cursor home": "\x1b[2J\x1b[H",
    "C1 CSI and OSC": "\x9b2J\x9d0;title\x9c",
    "BEL, BS, CR, DEL": "ok\x07\x08\x08\rforged\x7f",
    "bidi override and isolate": "\u202eevil\u2066x\u2069\u200f",
    "zero-width and tag characters": "a\u200b\u2060\ufeff\U000e0041",
    "rich markup that crashes": "[/bold]",
    "rich markup hyperlink": "[link=https://evil.example]click[/link]",
    "rich markup styles": "[blink red on white]x[/]",
    "line separators": "a\u2028b\u2029c\x85d",
}
#: (arguments after `flujo state`, whether rich draws on a terminal)
TERMINAL_COMMANDS: list[tuple[list[str], bool]] = [
    (["ls"], False), (["ls", "--format", "json"], False), (["ls"], True),
    (["show", "{run}"], False), (["show", "{run}", "--json"], False),
    (["show", "{run}", "--raw"], False), (["show", "{run}"], True),
    (["show", "{run}", "--json"], True),
]
_SGR = re.compile(rb"\x1b\[[0-9;]*m")  # colours: the only escapes rich may write


def _terminal_cases() -> list[Case]:
    cases: list[Case] = []
    for name, text in TERMINAL_TEXTS.items():
        for argv, rich in TERMINAL_COMMANDS:
            label = " ".join(a for a in argv if a != "{run}") + (" (terminal)" if rich else "")
            cases.append(Case("hostile terminal text", f"{name}: {label}",
                              lambda sb, t=text, a=argv, r=rich: _shown_inert(sb, t, a, r),
                              writes=True))
    return cases


def _hostile_text_state(run_id: str, text: str) -> WorkflowState:
    return WorkflowState(run_id=run_id, pipeline_name=f"p{text}", pipeline_version=text,
                         status="failed", error=f"boom {text}", current_step_index=1,
                         step_names=["a", text], pipeline_context={text: [text, {text}]})


@contextlib.contextmanager
def _captured_cli(workdir: Path, rich: bool) -> Iterator[tuple[io.BytesIO, io.BytesIO]]:
    """The CLI's stdout and stderr as bytes; in ``workdir`` (no ./pyproject.toml of the
    caller's is read); with ``rich``, as if both were a terminal."""
    from flujo.cli import _output

    out, err = io.BytesIO(), io.BytesIO()
    streams = [io.TextIOWrapper(buf, encoding="utf-8", newline="\n") for buf in (out, err)]
    saved = (sys.stdout, sys.stderr, os.getcwd(), _output._is_tty)
    sys.stdout, sys.stderr = streams
    os.chdir(workdir)
    if rich:  # rich draws in colour: FORCE_COLOR is set by the warm-up (os.putenv is audited)
        _output._is_tty = lambda stream: True
    try:
        yield out, err
    finally:
        for stream in streams:
            stream.flush()
            stream.detach()  # a collected wrapper would close the buffer
        sys.stdout, sys.stderr = saved[0], saved[1]
        os.chdir(saved[2])
        _output._is_tty = saved[3]


def _acting(data: bytes) -> list[str]:
    """Characters of ``data`` that act on a terminal (rich's colours aside)."""
    text = _SGR.sub(b"", data).decode("utf-8")
    return sorted({c for c in text if c not in "\t\n"
                   and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")})


def _shown_inert(sb: Sandbox, text: str, argv: list[str], rich: bool) -> str:
    """Store ``text`` in every field a person sees, run `flujo state ARGV` on the store: it
    must succeed and write nothing that acts on a terminal, on stdout or stderr."""
    from flujo.cli import main

    if sb.audit is not None:
        sb.audit.sockets_ok = True  # asyncio.run's self-pipe is a socket pair
    folder = sb.root / sb.fresh_id("cli")
    folder.mkdir()
    run_id = f"{sb.fresh_id('r')}\u202e[blink red]"  # a valid run id: bidi and markup
    backend = SQLiteBackend(folder / "state.db", synchronous="NORMAL")
    sb.run(backend.save_state(run_id, _hostile_text_state(run_id, text)))
    sb.run(backend.close())
    args = ["state", *(run_id if a == "{run}" else a for a in argv),
            "--store", f"sqlite:///{folder / 'state.db'}"]
    with _captured_cli(folder, rich) as (out, err):
        code = main(args)
    if code != 0:
        raise CheckFailed(f"exit code {code}: {err.getvalue()[:300]!r}")
    for stream, data in (("stdout", out.getvalue()), ("stderr", err.getvalue())):
        acting = _acting(data)
        if acting:
            raise CheckFailed(f"{stream} holds {acting}: {data[:300]!r}")
    return "shown inert"


def build_corpus(records: Records, *, postgres: bool, sweep: int) -> list[Case]:
    return [*_tag_cases(), *_reference_cases(), *_library_value_cases(),
            *_process_sweep(sweep), *_method_cases(), *_size_cases(),
            *_record_cases(records), *_run_id_cases(postgres), *_save_cases(),
            *_store_cases(), *_container_cases(), *_terminal_cases()]


# -- running the corpus --------------------------------------------------------------------------

def _warm_up(sb: Sandbox, records: Records) -> None:
    """Take every benign code path once, so that lazy imports happen before auditing."""
    sample = {"d": datetime(2024, 3, 10, 1, 30, tzinfo=UTC), "m": Money(Decimal(1), "EUR"),
              "s": {1, 2}, "b": b"x", "t": (1,), "l": Loose(a=1, z=2), "p": Pair(1, 2),
              "e": Shade.DARK, "v": Versioned(value=1), "tr": Trap(1)}
    with warnings.catch_warnings():  # the corpus's own classes live in this script
        warnings.simplefilter("ignore", UnportableTypeWarning)
        decode(safe_serialize(sample))
    decode({"$t": "datetime@1", "v": "2024-03-10T01:30:00+01:00[Europe/Paris]"})
    decode({"$t": "hostile.Versioned@1", "v": 1})
    deserialize_from_json("[1]")
    with contextlib.suppress(FlujoError):
        decode({"$t": "os:system@1", "v": 1})
    with contextlib.suppress(FlujoError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decode({"$t": "os:system@1", "v": 1}, strict=False)
        decode(nested_list(1000))
    for kind in ("memory", "file", "sqlite"):
        for encrypted in (False, True):
            backend = (sb.encrypted if encrypted else sb.plain)[kind]
            sb.run(backend.save_state("warm", state_for("warm", x=Decimal(1))))
            sb.run(backend.load_record("warm"))
            async def claim(b: StateBackend = backend) -> None:
                async with b.claim("warm"):
                    pass
            sb.run(claim())
            sb.run(backend.delete_state("warm"))
        with contextlib.suppress(FlujoError):
            _load_placed(sb, kind, b"not json", rename=False)
        _load_placed(sb, kind, records.encrypted_b, encrypted=True, run_id="b")
        with contextlib.suppress(FlujoError):  # failed authentication
            _load_placed(sb, kind, records.encrypted_a.replace(b'"k1"', b'"k2"'),
                         encrypted=True, run_id="a")
    _load_placed(sb, "memory", records.zlib, run_id="r")
    _load_placed(sb, "memory", records.encrypted_zstd, encrypted=True, run_id="z")
    for op in ("save", "load", "delete", "claim", "runner"):
        with contextlib.suppress(FlujoError):
            _run_id_op(sb, "memory", "..", op)
    _round_trip_id(sb, "memory", "warm")
    if sb.postgres is not None:
        _round_trip_id(sb, "postgres", "warm")
        with contextlib.suppress(FlujoError):
            _run_id_op(sb, "postgres", "..", "claim")
    os.environ.update(FORCE_COLOR="1", COLUMNS="300")  # rich: colours, as on a terminal
    for argv, rich in TERMINAL_COMMANDS:  # the CLI's and rich's lazy imports
        with contextlib.suppress(CheckFailed):  # the run id is hostile: judged in the cases
            _shown_inert(sb, "warm", argv, rich)
    traceback.format_exc()


def _worker(cases: list[Case], start: int, records: Records, workdir: Path,
            postgres: tuple[str, str] | None, out: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="sandbox-", dir=workdir)).resolve()
    sb = Sandbox(root, postgres)
    _warm_up(sb, records)
    tz_paths = tuple(str(Path(p).resolve()) for p in ("/usr/share/zoneinfo", sys.prefix,
                                                        sys.base_prefix))
    audit = Audit(root, tz_paths)
    sb.audit = audit
    sys.addaudithook(audit.hook)
    for index in range(start, len(cases)):
        case = cases[index]
        if case.isolate and index != start:
            return  # the parent starts a fresh worker for it
        os.write(out, json.dumps({"start": index}).encode() + b"\n")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        audit.events = []
        audit.writes = case.writes
        audit.sockets_ok = False
        before = len(CALLS)
        modules = set(sys.modules)
        began = time.perf_counter()
        audit.active = True
        try:
            detail = case.run(sb)
            outcome = "decoded"
        except FlujoError as exc:
            outcome, detail = "typed", f"{type(exc).__name__}: {str(exc)[:200]}"
        except CheckFailed as exc:
            outcome, detail = "check", str(exc)[:300]
        except BaseException as exc:
            outcome, detail = "untyped", f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            audit.active = False
        seconds = time.perf_counter() - began
        if len(CALLS) != before and outcome != "check":
            outcome, detail = "check", f"a type's own code ran: {CALLS[before:]}"
        imported = sorted(set(sys.modules) - modules)
        if imported:
            audit.events.insert(0, f"imported {', '.join(imported[:5])}")
        if audit.events:
            outcome, detail = "audit", "; ".join(audit.events[:5])
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        os.write(out, json.dumps({"done": index, "outcome": outcome, "detail": detail,
                                  "seconds": round(seconds, 4), "rss_kb": rss,
                                  "growth_kb": rss - rss_before if case.isolate else None,
                                  }).encode() + b"\n")
        if case.isolate:
            return


@dataclass
class Report:
    inputs: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    typed_errors: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    known_issues: list[dict[str, Any]] = field(default_factory=list)
    slowest: list[tuple[float, str]] = field(default_factory=list)
    max_rss_mb: float = 0.0
    isolated_growth_mb: dict[str, float] = field(default_factory=dict)
    decoded: dict[str, Counter[str]] = field(default_factory=dict)
    workers: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        data = {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()}
        data["decoded"] = {k: dict(v) for k, v in self.decoded.items()}
        data["slowest"] = sorted(self.slowest, reverse=True)[:10]
        data["ok"] = self.ok
        return data


FAILING = ("untyped", "check", "audit", "hang", "crash")


def run_corpus(workdir: Path, *, bomb_bytes: int = 256 << 20, timeout: float = 20.0,
               sweep: int = 2000, categories: set[str] | None = None,
               postgres: tuple[str, str] | None = None) -> Report:
    started = time.perf_counter()
    records = make_records(bomb_bytes)
    cases = build_corpus(records, postgres=postgres is not None, sweep=sweep)
    if categories:
        cases = [c for c in cases if c.category in categories]
    report = Report(inputs=len(cases), by_category=dict(Counter(c.category for c in cases)))
    index = 0
    while index < len(cases):
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            code = 0
            try:
                _worker(cases, index, records, workdir, postgres, write_fd)
            except BaseException:
                traceback.print_exc()
                code = 3
            finally:
                os._exit(code)
        os.close(write_fd)
        report.workers += 1
        index = _follow(pid, read_fd, cases, index, report, timeout)
        os.close(read_fd)
    report.seconds = round(time.perf_counter() - started, 1)
    return report


def _follow(pid: int, fd: int, cases: list[Case], index: int, report: Report,
            timeout: float) -> int:
    """Read a worker's results; return the index of the first input it did not finish."""
    buffer = b""
    inflight: int | None = None
    following = index
    deadline = time.monotonic() + 300  # warm-up
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            if inflight is None:
                raise RuntimeError(f"a worker hung outside any input (after {following})")
            _record(report, cases[inflight], "hang", "still running after the time limit",
                    None, None)
            return inflight + 1
        chunk = os.read(fd, 65536)
        if not chunk:  # the worker ended
            _, status = os.waitpid(pid, 0)
            if inflight is not None:
                _record(report, cases[inflight], "crash", f"the worker died: status {status}",
                        None, None)
                return inflight + 1
            if following == index < len(cases):
                raise RuntimeError(f"a worker ended (status {status}) before input {following}")
            return following
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            message = json.loads(line)
            if "start" in message:
                inflight = message["start"]
                deadline = time.monotonic() + (cases[inflight].timeout or timeout)
            else:
                done = message["done"]
                _record(report, cases[done], message["outcome"], message["detail"],
                        message["seconds"], message["rss_kb"])
                if message["growth_kb"] is not None:
                    report.isolated_growth_mb[cases[done].name] = round(
                        message["growth_kb"] / 1024, 1)
                inflight, following = None, done + 1
                deadline = time.monotonic() + 60  # until the next start line


def _record(report: Report, case: Case, outcome: str, detail: str, seconds: float | None,
            rss_kb: int | None) -> None:
    report.outcomes[outcome] += 1
    if outcome == "decoded":
        report.decoded.setdefault(case.category, Counter())[detail[:60]] += 1
    if outcome == "typed":
        report.typed_errors[detail.split(":", 1)[0]] += 1
    if seconds is not None:
        report.slowest.append((seconds, f"{case.category}: {case.name}"))
        report.slowest = sorted(report.slowest, reverse=True)[:10]
    if rss_kb is not None:
        report.max_rss_mb = max(report.max_rss_mb, round(rss_kb / 1024, 1))
    entry = {"category": case.category, "input": case.name, "outcome": outcome,
             "detail": detail}
    if case.known_issue:
        report.known_issues.append({**entry, "issue": case.known_issue})
    elif outcome in FAILING:
        report.failures.append(entry)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the report here (default: stdout)")
    parser.add_argument("--bomb-mib", type=int, default=1024,
                        help="size that the decompression bombs inflate to")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per input")
    parser.add_argument("--sweep", type=int, default=20000,
                        help="how many callables of the process to name in tags")
    parser.add_argument("--category", action="append", help="only these categories")
    parser.add_argument("--postgres", action="store_true", help="hostile run ids on PostgreSQL")
    parser.add_argument("--schema", default=None,
                        help="PostgreSQL schema to use (kept); default: a new one, dropped")
    parser.add_argument("--list", action="store_true", help="count the inputs and exit")
    parser.add_argument("--workdir")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        workdir = Path(args.workdir) if args.workdir else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="flujo-hostile-")))
        postgres = None
        if args.postgres:
            from _common import postgres_schema

            dsn = postgres_dsn()
            reason = postgres_unavailable(dsn)
            if reason:
                parser.error(reason)
            schema = args.schema or stack.enter_context(postgres_schema(dsn, "flujo_hostile"))
            postgres = (dsn, schema)
        if args.list:
            records = make_records(1 << 20)
            cases = build_corpus(records, postgres=bool(postgres), sweep=args.sweep)
            print(json.dumps(dict(Counter(c.category for c in cases)), indent=2))
            print(len(cases), "inputs")
            return 0
        report = run_corpus(workdir, bomb_bytes=args.bomb_mib << 20, timeout=args.timeout,
                            sweep=args.sweep, categories=set(args.category or ()),
                            postgres=postgres)
    write_json(args.json, report.to_json())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
