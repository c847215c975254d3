"""Decoding never imports a module and never resolves anything but data classes."""

from __future__ import annotations

import builtins
import importlib
import os
import subprocess
import sys
from typing import Any
from uuid import UUID

import pytest

from flujo.exceptions import UnknownTypeError
from flujo.serialization import TAG, VALUE, TypeRegistry, safe_deserialize

from ._support import Color, make_registry

DANGEROUS_TAGS = [
    "os:system@1",
    "subprocess:Popen@1",
    "subprocess:run@1",
    "builtins:eval@1",
    "builtins:exec@1",
    "builtins:__import__@1",
    "pickle:loads@1",
    "os.path:join@1",
    "importlib:import_module@1",
    "shutil:rmtree@1",
    "ctypes:CDLL@1",
    "this_module_does_not_exist:Anything@1",
    "sys:modules@1",
    "os:environ@1",
    "builtins:object@1",
    "builtins:type@1",
    "collections:OrderedDict@1",
    "pathlib:Path@1",
    "flujo.serialization:TypeRegistry@1",
    f"{__name__}:Exploding@1",
    f"{__name__}:Exploding.__init__@1",
    f"{__name__}:Exploding.__class__@1",
]


class Exploding:
    """A plain class in an imported module: never a decode target."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("constructed from data!")

    def __new__(cls, *args: Any, **kwargs: Any) -> Exploding:
        raise AssertionError("constructed from data!")


class ImportWatch:
    """Counts ``import`` statements and ``importlib.import_module`` calls while active."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.new_modules: set[str] = set()

    def decode(self, data: Any, **options: Any) -> Any:
        """``safe_deserialize`` with imports watched; returns the value or the exception."""
        original_import = builtins.__import__
        original_import_module = importlib.import_module

        def watched_import(name: str, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return original_import(name, *args, **kwargs)

        def watched_import_module(name: str, package: str | None = None) -> Any:
            self.calls.append(name)
            return original_import_module(name, package)

        modules_before = set(sys.modules)
        builtins.__import__ = watched_import
        importlib.import_module = watched_import_module
        try:
            result: Any = safe_deserialize(data, **options)
        except Exception as exc:
            result = exc
        finally:
            builtins.__import__ = original_import
            importlib.import_module = original_import_module
        self.new_modules = set(sys.modules) - modules_before
        return result


@pytest.fixture
def watch() -> ImportWatch:
    return ImportWatch()


@pytest.fixture(params=["auto_resolve_on", "auto_resolve_off"])
def registry(request: pytest.FixtureRequest) -> TypeRegistry:
    return make_registry(auto_resolve=request.param == "auto_resolve_on")


@pytest.mark.parametrize("tag", DANGEROUS_TAGS)
@pytest.mark.parametrize("payload", [None, "echo pwned", ["rm", "-rf", "/"], {"args": ["x"]}])
def test_dangerous_tags_are_unknown_and_nothing_is_imported_or_called(
        tag: str, payload: Any, registry: TypeRegistry, watch: ImportWatch,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("called from data!")

    monkeypatch.setattr(os, "system", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    error = watch.decode({"state": [{TAG: tag, VALUE: payload}]}, registry=registry)
    assert isinstance(error, UnknownTypeError), error
    assert error.tag == tag
    assert error.path == "$.state[0]"
    assert watch.calls == []
    assert watch.new_modules == set()


def test_tag_of_a_module_that_is_not_imported_stays_unimported(watch: ImportWatch) -> None:
    assert "antigravity" not in sys.modules
    error = watch.decode({TAG: "antigravity:geohash@1", VALUE: None})
    assert isinstance(error, UnknownTypeError)
    assert "antigravity" not in sys.modules
    assert watch.calls == []


def test_decoding_known_types_imports_nothing(watch: ImportWatch) -> None:
    registry = make_registry()
    data = {
        "a": {TAG: "datetime@1", VALUE: "2024-11-03T01:30:00-05:00[America/New_York]"},
        "b": {TAG: "decimal@1", VALUE: "1.10"},
        "c": {TAG: f"{Color.__module__}:Color@1", VALUE: "red"},
        "d": {TAG: "money@1", VALUE: {"amount": "1.00", "currency": "EUR"}},
        "e": {TAG: "defaultdict@1", VALUE: {"factory": "list", "items": []}},
        "f": {TAG: "tuple@1", VALUE: [{TAG: "uuid@1", VALUE: str(UUID(int=7))}]},
    }
    back = watch.decode(data, registry=registry)
    assert not isinstance(back, Exception), back
    assert back["c"] is Color.RED
    assert watch.calls == []
    assert watch.new_modules == set()


def test_auto_resolve_off_only_reads_registered_names() -> None:
    registry = TypeRegistry(auto_resolve=False)
    with pytest.raises(UnknownTypeError):
        safe_deserialize({TAG: f"{Color.__module__}:Color@1", VALUE: "red"}, registry=registry)
    registry.register_type(Color, name="color")
    assert safe_deserialize({TAG: "color@1", VALUE: "red"}, registry=registry) is Color.RED


def test_defaultdict_factory_names_are_not_resolved_to_arbitrary_callables(
        watch: ImportWatch) -> None:
    for factory in ["os:system", "builtins:eval", f"{__name__}:Exploding", "subprocess:Popen"]:
        error = watch.decode({TAG: "defaultdict@1", VALUE: {"factory": factory, "items": []}})
        assert isinstance(error, UnknownTypeError), error
    assert watch.calls == []


def test_module_getattr_is_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module-level ``__getattr__`` (lazy attributes) must not run during lookup."""
    module = type(sys)("flujo_test_lazy_module")
    calls: list[str] = []

    def lazy(name: str) -> Any:
        calls.append(name)
        raise AttributeError(name)

    module.__getattr__ = lazy  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    with pytest.raises(UnknownTypeError):
        safe_deserialize({TAG: f"{module.__name__}:Model@1", VALUE: {}})
    assert calls == []


def test_stored_keys_sharing_one_hash_are_refused_quickly() -> None:
    import time

    from flujo.exceptions import DeserializationError

    prime = 2**61 - 1  # int hashes are n mod this prime: these all hash alike
    flood = [{"$t": "int@1", "v": hex(prime * (i + 2**64))} for i in range(5_000)]
    for data in ({"$t": "set@1", "v": flood}, {"$t": "dict@1", "v": [[k, 0] for k in flood]}):
        started = time.perf_counter()
        with pytest.raises(DeserializationError, match="share one hash"):
            safe_deserialize(data)
        assert time.perf_counter() - started < 1.0


def test_a_zone_name_outside_the_database_is_refused_without_importing() -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import sys
        from flujo.serialization import safe_deserialize
        before = set(sys.modules)
        try:
            safe_deserialize({"$t": "datetime@1", "v": "2024-01-01T00:00:00+01:00[Mars/Base]"})
        except Exception as exc:
            print(type(exc).__name__)
        print(",".join(sorted(set(sys.modules) - before)))
    """)
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                         text=True, timeout=60).stdout.split("\n")
    assert out[0] == "DeserializationError" and out[1] == ""
