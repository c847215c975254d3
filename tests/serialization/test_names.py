"""Stored names resolve in a fresh process: trusted module prefixes, lazily imported submodules,
generic parametrizations rebuilt from the stored name, and a warning for names no other
process can resolve. Outside the trusted prefixes nothing is imported or created.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar

import pytest
from pydantic import BaseModel, create_model

from flujo.exceptions import RegistrationError, UnknownTypeError
from flujo.serialization import (
    TAG,
    TRUSTED_MODULES_ENV,
    VALUE,
    TypeRegistry,
    UnportableTypeWarning,
    safe_deserialize,
    safe_serialize,
)
from flujo.testing import assert_identical

T = TypeVar("T")
SRC = str(Path(__file__).resolve().parents[2] / "src")

# A package whose __init__ refuses attribute lookups (as a lazy SDK package would import on
# them), with the application's types in a submodule the package does not import.
PACKAGE_INIT = '''
import os
def __getattr__(name):
    if os.environ.get("TOUCHED_FILE"):
        open(os.environ["TOUCHED_FILE"], "a").write(name + "\\n")
    raise AttributeError(name)
'''
MODELS = '''
import dataclasses
import enum
from typing import Generic, TypeVar
from pydantic import BaseModel

T = TypeVar("T")
U = TypeVar("U")


class Row(BaseModel):
    a: int


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


class Page(BaseModel, Generic[T]):
    items: list[T]

    class Cell(BaseModel, Generic[T]):
        value: T


class Pair(BaseModel, Generic[T]):
    left: T
    right: T
'''
# Values built the way an application builds them, including parametrizations made at the top
# of a module (pydantic names those after that module, flujo after the generic's own module).
WRITER = '''
import json, sys
from typing import Literal, Optional
from {pkg}.models import U, Color, Page, Pair, Point, Row
from flujo.serialization import safe_serialize

values = [
    Row(a=1),
    Page[Row](items=[Row(a=2)]),
    Page[Optional[Row]](items=[None, Row(a=3)]),
    Page[Page[int]](items=[Page[int](items=[4])]),
    Page.Cell[str](value="x"),
    Page[Point](items=[Point(5)]),
    Pair[dict[str, Row | None]](left={{"k": None}}, right={{"k": Row(a=6)}}),
    Page[Literal["a", -1]](items=["a", -1]),
    Page[tuple[Color, ...]](items=[(Color.RED,)]),
    Page[U](items=[7]),  # partially parametrized, as openai's parse() results are
]
print(json.dumps(safe_serialize(values)))
'''
READER = '''
import json, sys
from flujo.serialization import TypeRegistry, safe_deserialize
from flujo.serialization._auto import auto_name  # flujo's names: pydantic's vary by Python
trusted = json.loads(sys.argv[1])
registry = TypeRegistry() if trusted is None else TypeRegistry(trusted_modules=trusted)
try:
    values = safe_deserialize(json.loads(sys.stdin.read()), registry=registry)
except Exception as exc:
    print(json.dumps({{"error": type(exc).__name__, "message": str(exc)}}))
else:
    print(json.dumps({{"repr": [repr(v) for v in values],
                      "types": [auto_name(type(v)) for v in values],
                      "loaded": [m for m in sys.modules if m.startswith("{pkg}")]}}))
'''


@pytest.fixture
def app(tmp_path: Path) -> Iterator[str]:
    """A uniquely named application package on disk (also importable in this process)."""
    name = f"app_{uuid.uuid4().hex[:10]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text(PACKAGE_INIT)
    (tmp_path / name / "models.py").write_text(MODELS)
    sys.path.insert(0, str(tmp_path))
    try:
        yield name
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


def run(code: str, *args: str, cwd: Path, stdin: str = "",
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items()
                   if key != TRUSTED_MODULES_ENV}
    environment.update(PYTHONPATH=os.pathsep.join([str(cwd), SRC]), **(env or {}))
    return subprocess.run([sys.executable, "-c", code, *args], input=stdin, text=True,
                          capture_output=True, cwd=cwd, env=environment, timeout=120,
                          check=False)


def write(app: str, cwd: Path) -> str:
    done = run(WRITER.format(pkg=app), cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def read(app: str, data: str, cwd: Path, trusted: list[str] | None,
         env: dict[str, str] | None = None) -> dict[str, Any]:
    done = run(READER.format(pkg=app), json.dumps(trusted), cwd=cwd, stdin=data, env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_fresh_process_imports_trusted_submodules_and_rebuilds_parametrizations(
        app: str, tmp_path: Path) -> None:
    data = write(app, tmp_path)
    touched = tmp_path / "touched"
    result = read(app, data, tmp_path, [app], env={"TOUCHED_FILE": str(touched)})
    assert "error" not in result, result
    # every value as the writer built it, with the same class names (parametrizations too)
    expected = read(app, data, tmp_path, [app])["repr"]
    assert result["repr"] == expected
    assert result["types"] == [
        f"{app}.models:Row", f"{app}.models:Page[Row]",
        f"{app}.models:Page[Union[Row, NoneType]]", f"{app}.models:Page[Page[int]]",
        f"{app}.models:Page.Cell[str]", f"{app}.models:Page[Point]",
        f"{app}.models:Pair[dict[str, Union[Row, NoneType]]]",
        f"{app}.models:Page[Literal['a', -1]]", f"{app}.models:Page[tuple[Color, ...]]",
        f"{app}.models:Page[~U]",
    ]
    assert sorted(result["loaded"]) == [app, f"{app}.models"]
    assert not touched.exists()  # the package's __getattr__ never ran


def test_a_fresh_process_imports_nothing_outside_the_trusted_prefixes(
        app: str, tmp_path: Path) -> None:
    data = write(app, tmp_path)
    for trusted in ([], [f"{app}.model"], [f"{app}x"], None):
        result = read(app, data, tmp_path, trusted)
        assert result["error"] == "UnknownTypeError", (trusted, result)
        assert f"import '{app}.models' before reading, or trust it" in result["message"]
        assert "loaded" not in result


def test_the_environment_variable_and_pyproject_trust_modules(app: str, tmp_path: Path) -> None:
    data = write(app, tmp_path)
    by_env = read(app, data, tmp_path, None, env={TRUSTED_MODULES_ENV: f" other, {app} "})
    assert "error" not in by_env, by_env
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "x"\n\n[tool.flujo]\ntrusted_modules = ["{app}.models"]\n')
    by_pyproject = read(app, data, tmp_path, None)
    assert by_pyproject["repr"] == by_env["repr"]
    # an explicit list replaces the configuration
    assert read(app, data, tmp_path, [])["error"] == "UnknownTypeError"


def test_bad_configuration_is_a_registration_error_naming_its_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(TRUSTED_MODULES_ENV, "good, ../evil")
    with pytest.raises(RegistrationError, match=r"\$FLUJO_TRUSTED_MODULES: '../evil'"):
        _ = TypeRegistry().trusted_modules
    monkeypatch.delenv(TRUSTED_MODULES_ENV)
    (tmp_path / "pyproject.toml").write_text('[tool.flujo]\ntrusted_modules = "myapp"\n')
    with pytest.raises(RegistrationError, match=r"pyproject.toml.*must be a list"):
        _ = TypeRegistry().trusted_modules
    (tmp_path / "pyproject.toml").write_text('[tool.flujo]\ntrusted_modules = [1]\n')
    with pytest.raises(RegistrationError, match=r"trusted_modules: 1 is not a module name"):
        _ = TypeRegistry().trusted_modules
    (tmp_path / "pyproject.toml").write_text('[tool.flujo\n')
    with pytest.raises(RegistrationError, match=r"cannot read .*pyproject.toml"):
        _ = TypeRegistry().trusted_modules
    (tmp_path / "pyproject.toml").write_text('[tool.flujo]\ntrusted_modules = ["a.b", "a.b"]\n')
    assert TypeRegistry().trusted_modules == ("a.b",)


@pytest.mark.parametrize("prefixes", [["a..b"], [".a"], ["a b"], [""], "myapp", [None]])
def test_a_prefix_that_is_not_a_module_name_is_refused(prefixes: Any) -> None:
    with pytest.raises(RegistrationError, match="trusted_modules"):
        TypeRegistry(trusted_modules=prefixes)


def test_trusting_needs_name_resolution() -> None:
    with pytest.raises(RegistrationError, match="auto_resolve=False"):
        TypeRegistry(auto_resolve=False, trusted_modules=["myapp"])
    with pytest.raises(RegistrationError, match="auto_resolve=False"):
        TypeRegistry(auto_resolve=False).trust_modules("myapp")
    assert TypeRegistry(auto_resolve=False).trusted_modules == ()


def test_trust_modules_adds_prefixes(app: str) -> None:
    registry = TypeRegistry(trusted_modules=[])
    data = {TAG: f"{app}.models:Row@1", VALUE: [{"a": 1}]}
    with pytest.raises(UnknownTypeError):
        safe_deserialize(data, registry=registry)
    registry.trust_modules(app)
    assert registry.trusted_modules == (app,)
    assert safe_deserialize(data, registry=registry).a == 1


def test_a_missing_trusted_module_is_an_unknown_type_naming_it(app: str) -> None:
    registry = TypeRegistry(trusted_modules=[app])
    with pytest.raises(UnknownTypeError, match=rf"trusted module '{app}.nothing'.*cannot be"):
        safe_deserialize({TAG: f"{app}.nothing:Row@1", VALUE: [{"a": 1}]}, registry=registry)


def models(app: str, registry: TypeRegistry) -> Any:
    safe_deserialize({TAG: f"{app}.models:Row@1", VALUE: [{"a": 1}]}, registry=registry)
    return sys.modules[f"{app}.models"]


@pytest.mark.parametrize("arguments", [
    "__import__('os').system('true')",  # a call
    "Row.__subclasses__",  # an attribute that is no class
    "lambda: 0",
    "Row if 1 else Row",
    "[Row]",
    "Literal[Row]",  # a name where a value belongs
    "Literal[1.5]",
    "Nope",  # nothing has that name
    "~Nope",  # no such type variable
    "+U",  # U is invariant
])
def test_type_arguments_that_are_not_types_by_name_are_refused(app: str, arguments: str) -> None:
    registry = TypeRegistry(trusted_modules=[app])
    models(app, registry)
    with pytest.raises(UnknownTypeError, match=r"cannot rebuild|cannot read") as info:
        safe_deserialize({TAG: f"{app}.models:Page[{arguments}]@1", VALUE: [{"items": []}]},
                         registry=registry)
    assert info.value.path == "$"


def test_type_arguments_of_other_modules_are_written_with_their_module(app: str) -> None:
    registry = TypeRegistry(trusted_modules=[app])
    module = models(app, registry)
    extra = ModuleType(f"{app}.extra")  # another module with a class also named Row
    extra.Row = create_model("Row", a=(str, ...), __module__=f"{app}.extra")  # type: ignore[attr-defined]
    sys.modules[extra.__name__] = extra
    try:
        home = module.Page[module.Row](items=[module.Row(a=1)])
        other = module.Page[extra.Row](items=[extra.Row(a="x")])
        data = safe_serialize([home, other], registry=TypeRegistry())
        assert [d[TAG] for d in data] == [f"{app}.models:Page[Row]@1",
                                          f"{app}.models:Page[{app}.extra.Row]@1"]
        assert_identical(safe_deserialize(data, registry=TypeRegistry()), [home, other])
        # a parametrization not made yet is rebuilt with the class of the named module
        tag = f"{app}.models:Pair[{app}.extra.Row]@1"
        value = {TAG: tag, VALUE: [{"left": {"a": "l"}, "right": {"a": "r"}}]}
        made = safe_deserialize(value, registry=registry)
        assert type(made) is module.Pair[extra.Row]
    finally:
        del sys.modules[extra.__name__]


def test_names_without_modules_must_name_one_class_in_the_process(app: str) -> None:
    """pydantic's spelling (flujo 0.9.0's first builds): the argument has no module."""
    registry = TypeRegistry(trusted_modules=[app])
    models(app, registry)
    single = create_model("Single", a=(int, ...), __module__=f"{app}.elsewhere")
    made = safe_deserialize({TAG: f"{app}.models:Page[Single]@1", VALUE: [{"items": []}]},
                            registry=registry)
    assert type(made).__pydantic_generic_metadata__["args"] == (single,)
    twins = [create_model("Twin", a=(int, ...), __module__=m) for m in ("one", "two")]
    with pytest.raises(UnknownTypeError, match=r"2 different classes are named 'Twin' \(in "
                       rf"'{app}.models:Page\[Twin\]'\) in this process: one:Twin, two:Twin"):
        safe_deserialize({TAG: f"{app}.models:Page[Twin]@1", VALUE: [{"items": []}]},
                         registry=registry)
    assert len(twins) == 2


def test_type_variables_of_other_modules_are_written_with_their_module(app: str) -> None:
    registry = TypeRegistry(trusted_modules=[app])
    module = models(app, registry)
    extra = ModuleType(f"{app}.tv")
    extra.U = TypeVar("U")  # type: ignore[attr-defined]  # a second U, as SDKs have
    extra.U.__module__ = extra.__name__  # type: ignore[attr-defined]
    sys.modules[extra.__name__] = extra
    try:
        values = [module.Page[module.U](items=[1]), module.Page[extra.U](items=[2])]
        data = safe_serialize(values, registry=TypeRegistry())
        assert [d[TAG] for d in data] == [f"{app}.models:Page[~U]@1",
                                          f"{app}.models:Page[~{app}.tv.U]@1"]
        assert_identical(safe_deserialize(data, registry=TypeRegistry()), values)
        made = safe_deserialize({TAG: f"{app}.models:Pair[~{app}.tv.U]@1",
                                 VALUE: {"left": 1, "right": 2}}, registry=registry)
        assert type(made) is module.Pair[extra.U]
    finally:
        del sys.modules[extra.__name__]


def test_rebuilt_parametrizations_are_bounded(app: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from flujo.serialization import _names

    monkeypatch.setattr(_names, "MAX_REBUILT", 3)
    registry = TypeRegistry(trusted_modules=[app])
    models(app, registry)
    data = [{TAG: f"{app}.models:Page[{t}]@1", VALUE: [{"items": []}]}
            for t in ("int", "str", "float", "bool", "bytes")]
    with pytest.raises(UnknownTypeError, match="already made 3 parametrizations") as info:
        safe_deserialize(data, registry=registry)
    assert info.value.path == "$[3]"


def test_trusted_dunder_modules_are_never_imported(app: str, tmp_path: Path) -> None:
    (tmp_path / app / "__main__.py").write_text("raise SystemExit(3)\n")
    (tmp_path / app / "exits.py").write_text("raise SystemExit(4)\n")
    registry = TypeRegistry(trusted_modules=[app])
    with pytest.raises(UnknownTypeError, match="which flujo never imports"):
        safe_deserialize({TAG: f"{app}.__main__:X@1", VALUE: {}}, registry=registry)
    with pytest.raises(UnknownTypeError, match="SystemExit: 4"):
        safe_deserialize({TAG: f"{app}.exits:X@1", VALUE: {}}, registry=registry)


def test_names_are_looked_up_without_running_code_of_modules_or_classes(app: str) -> None:
    class Meta(type):
        def __getattr__(cls, name: str) -> Any:
            raise AssertionError(f"the metaclass was asked for {name}")

    class Proxy(ModuleType):
        def __getattribute__(self, name: str) -> Any:
            raise AssertionError(f"the module was asked for {name}")

    plain = Meta("Plain", (), {"__module__": f"{app}.proxied"})
    proxied = Proxy(f"{app}.proxied")
    ModuleType.__dict__["__dict__"].__get__(proxied)["Plain"] = plain
    sys.modules[f"{app}.proxied"] = proxied
    try:
        for tag in (f"{app}.proxied:Plain@1", f"{app}.proxied:Plain.x@1",
                    f"{app}.proxied:Nothing@1"):
            with pytest.raises(UnknownTypeError):
                safe_deserialize({TAG: tag, VALUE: {}}, registry=TypeRegistry())
    finally:
        del sys.modules[f"{app}.proxied"]


def test_oversized_or_malformed_type_arguments_are_refused(app: str) -> None:
    registry = TypeRegistry(trusted_modules=[app])
    models(app, registry)
    for arguments in ["list[" * 300 + "int" + "]" * 300, "int" + ", int" * 400, "int]["]:
        with pytest.raises(UnknownTypeError, match="type arguments"):
            safe_deserialize({TAG: f"{app}.models:Page[{arguments}]@1", VALUE: [{"items": []}]},
                             registry=registry)


def test_a_generic_outside_the_trusted_modules_is_not_parametrized(app: str) -> None:
    registry = TypeRegistry(trusted_modules=[f"{app}.other"])
    module = models(app, TypeRegistry(trusted_modules=[app]))
    data = {TAG: f"{app}.models:Page[int]@1", VALUE: [{"items": [1]}]}
    with pytest.raises(UnknownTypeError, match=rf"trust '{app}.models' so that the param"):
        safe_deserialize(data, registry=registry)
    assert "Page[int]" not in {c.__qualname__ for c in module.Page.__subclasses__()}
    # a trusted generic whose argument is a generic outside the trusted modules: refused too
    outside = rf"'{OutsideBox.__module__}:OutsideBox' is a generic model outside"
    with pytest.raises(UnknownTypeError, match=outside):
        safe_deserialize({TAG: f"{app}.models:Page[OutsideBox[int]]@1", VALUE: [{"items": []}]},
                         registry=TypeRegistry(trusted_modules=[f"{app}.models"]))


def test_a_parametrization_is_named_after_its_generic_whoever_made_it(app: str) -> None:
    module = models(app, TypeRegistry(trusted_modules=[app]))
    namespace: dict[str, Any] = {"__name__": f"{app}.views", "Page": module.Page,
                                 "Row": module.Row}
    sys.modules[f"{app}.views"] = type(sys)(f"{app}.views")
    try:
        # made at the top of another module, pydantic names it after that module
        exec("made = Page[Row]", namespace)
        made = namespace["made"]
        assert made.__module__ == f"{app}.views"
        data = safe_serialize(made(items=[module.Row(a=1)]), registry=TypeRegistry())
        assert data[TAG] == f"{app}.models:Page[Row]@1"
        # data written by flujo 0.8, which used the parametrization's own module, still reads
        legacy = {**data, TAG: f"{app}.views:Page[Row]@1"}
        assert type(safe_deserialize(legacy, registry=TypeRegistry())) is made
    finally:
        del sys.modules[f"{app}.views"]


def test_a_class_defined_in_a_function_warns_once_when_first_written() -> None:
    class Local(BaseModel):
        a: int

    registry = TypeRegistry()
    with pytest.warns(UnportableTypeWarning, match=r"Local is defined in a function.*"
                      r"register_type\(Local, name="):
        safe_serialize(Local(a=1), registry=registry)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = safe_deserialize(safe_serialize(Local(a=2), registry=registry), registry=registry)
    assert_identical(back, Local(a=2))
    registry.register_type(Local, name="tests.Local")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert safe_serialize(Local(a=3), registry=registry)[TAG] == "tests.Local@1"


def test_a_script_class_warns_pointing_at_the_script(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent('''
        from pydantic import BaseModel
        from flujo.serialization import safe_serialize

        class Item(BaseModel):
            a: int

        safe_serialize([Item(a=1), Item(a=2)])
    '''))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": SRC}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("UnportableTypeWarning") == 1
    assert f"{script}:8: UnportableTypeWarning: Item is defined in the script run as " \
           "__main__, so it is stored as '__main__:Item'" in done.stderr



class OutsideBox(BaseModel, Generic[T]):
    """A generic model in a module no test trusts."""

    content: T


def test_a_parametrization_with_a_script_class_argument_warns(app: str) -> None:
    module = models(app, TypeRegistry(trusted_modules=[app]))
    script_class = create_model("Item", a=(int, ...), __module__="__main__")
    value = module.Page[script_class](items=[script_class(a=1)])
    with pytest.warns(UnportableTypeWarning, match=r"has a type argument defined in the script"):
        data = safe_serialize(value, registry=TypeRegistry())
    assert data[TAG] == f"{app}.models:Page[__main__.Item]@1"
    registry = TypeRegistry()
    registry.register_type(type(value), name="page-of-items")  # a registered name: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert safe_serialize(value, registry=registry)[TAG] == "page-of-items@1"


def test_readers_in_other_threads_wait_for_a_trusted_module_being_imported(
        app: str, tmp_path: Path) -> None:
    import threading

    (tmp_path / app / "slow.py").write_text(
        "import time\ntime.sleep(0.5)\nfrom pydantic import BaseModel\n\n"
        "class S(BaseModel):\n    a: int\n")
    registry = TypeRegistry(trusted_modules=[app])
    results: list[Any] = []

    def read() -> None:
        try:
            results.append(type(safe_deserialize({TAG: f"{app}.slow:S@1", VALUE: [{"a": 1}]},
                                                 registry=registry)).__name__)
        except Exception as exc:  # collected: the assertion below shows it
            results.append(exc)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == ["S", "S", "S"]


def test_a_parametrization_no_reader_can_rebuild_warns(app: str) -> None:
    from typing import Annotated

    from pydantic import Field

    module = models(app, TypeRegistry(trusted_modules=[app]))
    value = module.Page[Annotated[int, Field(gt=0)]](items=[1])
    with pytest.warns(UnportableTypeWarning, match="type arguments that other processes cannot"):
        data = safe_serialize(value, registry=TypeRegistry())
    assert "Annotated[int, FieldInfo(" in data[TAG]


class _Calls:
    made: ClassVar[list[str]] = []


class _LazySettings:
    """Like Django's LazySettings: ``__class__`` is a property that sets things up."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        _Calls.made.append("__class__")
        return type


class _Proxy:
    """Like werkzeug's LocalProxy: every attribute goes through ``__getattr__``."""

    def __getattr__(self, name: str) -> Any:
        _Calls.made.append(f"__getattr__({name})")
        raise AttributeError(name)


@pytest.mark.parametrize("attribute", ["settings", "proxy", "settings.x", "proxy.Model"])
def test_names_resolve_without_running_code_of_the_objects_they_name(
        monkeypatch: pytest.MonkeyPatch, attribute: str) -> None:
    # was: finding a defined class read found.__class__ through isinstance, which ran a
    # module attribute's __class__ property or __getattr__ named by the data
    module = ModuleType(f"flujo_hostile_{uuid.uuid4().hex[:8]}")
    module.settings = _LazySettings()  # type: ignore[attr-defined]
    module.proxy = _Proxy()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    _Calls.made.clear()
    registry = TypeRegistry(trusted_modules=[module.__name__])
    for data in ({TAG: f"{module.__name__}:{attribute}@1", VALUE: {}},
                 {TAG: f"{module.__name__}:{attribute}[int]@1", VALUE: [{}]}):
        with pytest.raises(UnknownTypeError):
            safe_deserialize(data, registry=registry)
    assert _Calls.made == []
