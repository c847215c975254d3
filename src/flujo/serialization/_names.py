"""Which class a stored ``module:QualName`` names, and when a module may be imported to find it.

Without configuration nothing is imported: a name resolves only to a class the running process
has already defined, found through ``sys.modules`` and the classes' ``__dict__`` (never
``getattr``, so no module ``__getattr__``, property or descriptor runs) or among the
subclasses of ``BaseModel``, ``Enum`` and ``tuple``.

The application may *trust* module prefixes (``TypeRegistry(trusted_modules=...)``,
``$FLUJO_TRUSTED_MODULES``, ``[tool.flujo] trusted_modules`` in ``./pyproject.toml``). A name
whose module is a trusted prefix or lies below one may then

* import that module when the process has not imported it yet: the SDKs define their classes
  in submodules that their packages import lazily (``langchain_core.messages.human``);
* create a parametrization of a generic pydantic model (``Page[Row]``, openai's
  ``ParsedChatCompletion[Item]``, which exist only once something asked for them), the type
  arguments parsed from the stored name (``ast``, never ``eval``) and resolved as names of
  builtins, ``typing`` forms or classes already defined; the class made must carry exactly the
  stored name.

A module outside every prefix is never imported, and a parametrization outside them never
created, whatever the data says.
"""

from __future__ import annotations

import ast
import datetime
import decimal
import enum
import importlib
import os
import sys
import threading
import tomllib
import typing
import uuid
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from ..exceptions import RegistrationError, UnknownTypeError
from ._auto import auto_kind, auto_name

TRUSTED_MODULES_ENV = "FLUJO_TRUSTED_MODULES"
_PYPROJECT = Path("pyproject.toml")
_MAX_PARAMETRIZED_NAME = 1000  # longer type-argument text is not parsed (hostile data)
_MAX_ARGUMENT_NODES = 200

# Names a type argument may use besides classes: what pydantic's display of a type writes.
_ARGUMENT_NAMES: dict[str, Any] = {
    **{cls.__name__: cls for cls in (
        int, str, float, bool, bytes, bytearray, complex, object, list, dict, set, frozenset,
        tuple, type, datetime.datetime, datetime.date, datetime.time, datetime.timedelta,
        decimal.Decimal, uuid.UUID, Path)},
    "NoneType": type(None), "None": None, "Any": Any, "Union": typing.Union,
    "Optional": typing.Optional, "Literal": typing.Literal, "List": typing.List,  # noqa: UP006
    "Dict": typing.Dict, "Set": typing.Set, "FrozenSet": typing.FrozenSet,  # noqa: UP006
    "Tuple": typing.Tuple, "Type": typing.Type,  # noqa: UP006
}


def check_prefixes(prefixes: Iterable[object], source: str) -> tuple[str, ...]:
    """``prefixes`` as dotted module names, or RegistrationError naming ``source``."""
    if isinstance(prefixes, str):
        raise RegistrationError(f"{source}: expected a list of module names, got {prefixes!r}")
    checked: list[str] = []
    for prefix in prefixes:
        if not isinstance(prefix, str) or not _is_module_name(prefix):
            raise RegistrationError(
                f"{source}: {prefix!r} is not a module name (dotted identifiers, such as "
                "'myapp' or 'langchain_core.messages')")
        if prefix not in checked:
            checked.append(prefix)
    return tuple(checked)


def configured_prefixes() -> tuple[str, ...]:
    """The prefixes of ``$FLUJO_TRUSTED_MODULES`` and of ``./pyproject.toml``'s ``[tool.flujo]``.

    The variable is a comma-separated list; the table's ``trusted_modules`` a list of strings.
    """
    text = os.environ.get(TRUSTED_MODULES_ENV, "")
    found = check_prefixes(
        [part.strip() for part in text.split(",") if part.strip()], f"${TRUSTED_MODULES_ENV}")
    if _PYPROJECT.is_file():
        try:
            document = tomllib.loads(_PYPROJECT.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise RegistrationError(f"cannot read {_PYPROJECT.resolve()}: {exc}") from exc
        tool = document.get("tool")
        table = tool.get("flujo") if isinstance(tool, dict) else None
        listed = table.get("trusted_modules", []) if isinstance(table, dict) else []
        if not isinstance(listed, list):
            raise RegistrationError(
                f"{_PYPROJECT.resolve()}: [tool.flujo] trusted_modules must be a list of module "
                f"names, got {listed!r}")
        source = f"{_PYPROJECT.resolve()} [tool.flujo] trusted_modules"
        found += tuple(p for p in check_prefixes(listed, source) if p not in found)
    return found


class NameResolver:
    """Finds the class a ``module:QualName`` names (see the module docstring).

    ``trusted``: the trusted prefixes, or None to read them from the configuration
    (:func:`configured_prefixes`) the first time a name is not already defined.
    """

    def __init__(self, trusted: Iterable[str] | None) -> None:
        self._lock = threading.Lock()
        self._trusted: tuple[str, ...] | None = (
            None if trusted is None else check_prefixes(trusted, "trusted_modules"))
        # Classes this process wrote under their derived name: found again without a search,
        # including those no search finds (defined in a function).
        self.seen: weakref.WeakValueDictionary[str, type] = weakref.WeakValueDictionary()

    def trusted(self) -> tuple[str, ...]:
        if self._trusted is None:
            configured = configured_prefixes()
            with self._lock:
                if self._trusted is None:
                    self._trusted = configured
        return self._trusted

    def trust(self, prefixes: Iterable[str]) -> None:
        added = check_prefixes(prefixes, "trust_modules")
        current = self.trusted()
        with self._lock:
            self._trusted = current + tuple(p for p in added if p not in current)

    def is_trusted(self, module_name: str) -> bool:
        return any(module_name == p or module_name.startswith(p + ".") for p in self.trusted())

    def find(self, name: str) -> type | None:
        """The class named ``name``, None when there is none; UnknownTypeError when ambiguous,
        or when a trusted module cannot be imported or a parametrization not rebuilt."""
        module_name, sep, qualname = name.partition(":")
        if not sep or not qualname or not _is_module_name(module_name):
            return None
        found = self._defined(name, module_name, qualname)
        if found is not None or not self.is_trusted(module_name):
            return found
        if module_name not in sys.modules:
            _import(module_name, name)
            found = self._defined(name, module_name, qualname)
            if found is not None:
                return found
        if qualname.endswith("]") and "[" in qualname:
            return _Parametrizer(self, name).parametrize(module_name, qualname)
        return None

    def _defined(self, name: str, module_name: str, qualname: str) -> type | None:
        candidates: dict[int, type] = {}
        seen = self.seen.get(name)
        if seen is not None:
            candidates[id(seen)] = seen
        module = sys.modules.get(module_name)  # only modules already imported
        if module is not None and "<locals>" not in qualname:
            found = _attribute_path(module, qualname)
            if isinstance(found, type) and auto_name(found) == name:
                candidates[id(found)] = found
        if not candidates:
            for root in (BaseModel, enum.Enum, tuple):
                for cls in subclasses(root):
                    # flujo before 0.9 named a parametrization by its own __module__
                    if (cls.__qualname__ == qualname and cls.__module__ == module_name) \
                            or auto_name(cls) == name:
                        candidates[id(cls)] = cls
        return _one(name, [c for c in candidates.values() if auto_kind(c) is not None])


def subclasses(root: type) -> Iterable[type]:
    stack: list[type] = list(type.__subclasses__(root))
    while stack:
        cls = stack.pop()
        yield cls
        stack.extend(type.__subclasses__(cls))


def _is_module_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _attribute_path(start: object, dotted: str) -> object:
    """``start.a.b`` through ``__dict__`` only (no ``__getattr__``, property or descriptor)."""
    found: object = start
    for part in dotted.split("."):
        namespace = getattr(found, "__dict__", None)
        found = namespace.get(part) if isinstance(namespace, Mapping) else None
        if found is None:
            return None
    return found


def _one(name: str, classes: list[type], *, within: str | None = None) -> type | None:
    """The one class of ``classes``; ambiguous names (``name``, inside the tag ``within``)
    are refused rather than guessed."""
    if len(classes) > 1:
        where = "" if within is None else f" (in {within!r})"
        raise UnknownTypeError(
            f"{len(classes)} different classes are named {name!r}{where} in this process: "
            f"{', '.join(sorted(auto_name(c) for c in classes))}; register the intended one "
            "with an explicit name", tag=within or name)
    return classes[0] if classes else None


def _import(module_name: str, name: str) -> None:
    try:
        importlib.import_module(module_name)
    except Exception as exc:  # not found, or the module's own code failing
        raise UnknownTypeError(
            f"the trusted module {module_name!r} (for {name!r}) cannot be imported: "
            f"{type(exc).__name__}: {exc}", tag=name) from exc


class _Parametrizer:
    """Rebuilds the parametrization a stored name describes; generic origins must be trusted."""

    def __init__(self, resolver: NameResolver, name: str) -> None:
        self.resolver = resolver
        self.name = name

    def parametrize(self, module_name: str, qualname: str) -> type | None:
        name = self.name
        if len(qualname) > _MAX_PARAMETRIZED_NAME:
            raise UnknownTypeError(
                f"the type arguments of {name[:80]!r}... are too long to read", tag=name[:200])
        origin_name = qualname[:qualname.index("[")]
        origin = self.origin(module_name, origin_name)
        if origin is None:
            return None
        try:
            tree = ast.parse(f"_{qualname[len(origin_name):]}", mode="eval").body
        except (SyntaxError, ValueError) as exc:
            raise UnknownTypeError(f"cannot read the type arguments of {name!r}: {exc}",
                                   tag=name) from exc
        if not isinstance(tree, ast.Subscript) or \
                sum(1 for _ in ast.walk(tree)) > _MAX_ARGUMENT_NODES:
            raise UnknownTypeError(f"cannot read the type arguments of {name!r}", tag=name)
        made = self.subscript(origin, self.argument(tree.slice, literal=False))
        if not isinstance(made, type) or auto_name(made) != name:
            made_name = auto_name(made) if isinstance(made, type) else repr(made)
            raise UnknownTypeError(
                f"rebuilding {name!r} gave {made_name!r}; register the parametrization with "
                f"register_type({origin.__qualname__}[...], name=...)", tag=name)
        return made

    def origin(self, module_name: str, origin_name: str) -> type[BaseModel] | None:
        module = sys.modules.get(module_name)
        top = _attribute_path(module, origin_name) if module is not None else None
        if isinstance(top, type):
            found = [top]
        else:  # pydantic names a nested class's parametrization by its __name__ only
            found = [cls for cls in subclasses(BaseModel)
                     if cls.__module__ == module_name and cls.__name__ == origin_name]
        origin = _one(f"{module_name}:{origin_name}",
                      [cls for cls in found if _is_generic_origin(cls)], within=self.name)
        return origin if origin is None or issubclass(origin, BaseModel) else None

    def subscript(self, base: Any, arguments: Any) -> Any:
        if _is_generic_origin(base) and not self.resolver.is_trusted(base.__module__):
            raise UnknownTypeError(
                f"cannot rebuild {self.name!r}: {auto_name(base)!r} is a generic model outside "
                "the trusted modules; trust its module or register the parametrization",
                tag=self.name)
        try:
            return base[arguments]
        except Exception as exc:  # the class's own parametrization refusing the arguments
            raise UnknownTypeError(f"cannot rebuild {self.name!r}: {type(exc).__name__}: {exc}",
                                   tag=self.name) from exc

    def argument(self, node: ast.expr, *, literal: bool) -> Any:
        """The type (inside ``Literal[...]``, the value) that ``node`` of the name stands for."""
        if isinstance(node, ast.Tuple):
            return tuple(self.argument(item, literal=literal) for item in node.elts)
        if literal:
            if isinstance(node, ast.Constant) and (
                    node.value is None or isinstance(node.value, (str, int, bytes))):
                return node.value
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
                    and isinstance(node.operand, ast.Constant) and type(node.operand.value) is int:
                return -node.operand.value
            raise self.unreadable(node)
        if isinstance(node, ast.Constant) and node.value is Ellipsis:
            return ...
        if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Name) \
                and isinstance(node.op, ast.Invert | ast.UAdd | ast.USub):
            return self.type_variable(node.operand.id, node.op)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            left = self.argument(node.left, literal=False)
            return self.subscript(typing.Union, (left, self.argument(node.right, literal=False)))
        if isinstance(node, ast.Subscript):
            base = self.argument(node.value, literal=False)
            return self.subscript(base, self.argument(node.slice, literal=base is typing.Literal))
        dotted = _dotted(node)
        if dotted is None:
            raise self.unreadable(node)
        if dotted in _ARGUMENT_NAMES:
            return _ARGUMENT_NAMES[dotted]
        found = self.class_named(dotted)
        if found is None:
            raise UnknownTypeError(
                f"cannot rebuild {self.name!r}: no model, enum, dataclass or NamedTuple named "
                f"{dotted!r} is defined in this process; import the module that defines it",
                tag=self.name)
        return found

    def type_variable(self, name: str, variance: ast.unaryop) -> TypeVar:
        """The TypeVar ``~name`` (``+`` covariant, ``-`` contravariant), as a partial
        parametrization such as openai's ``ParsedChatCompletion[~ResponseFormatT]`` has it:
        found by name in the trusted modules already imported, one object or none."""
        wanted = (isinstance(variance, ast.UAdd), isinstance(variance, ast.USub))
        found: dict[int, TypeVar] = {}
        for module_name, module in list(sys.modules.items()):
            if self.resolver.is_trusted(module_name):
                candidate = _attribute_path(module, name)
                if isinstance(candidate, TypeVar) and candidate.__name__ == name and (
                        candidate.__covariant__, candidate.__contravariant__) == wanted:
                    found[id(candidate)] = candidate
        if len(found) != 1:
            raise UnknownTypeError(
                f"cannot rebuild {self.name!r}: {len(found) or 'no'} type variables named "
                f"{name!r} are defined in the trusted modules", tag=self.name)
        return next(iter(found.values()))

    def class_named(self, qualname: str) -> type | None:
        """The model, enum, dataclass or NamedTuple a type argument names by its qualified
        name (a generic origin: by its ``__name__``, as pydantic writes it). pydantic's names
        carry no module, so the search narrows: the name in the generic's own module, else
        the one such class in the trusted modules, else the one in the whole process."""
        module = sys.modules.get(self.name.partition(":")[0])
        local = _attribute_path(module, qualname) if module is not None else None
        if isinstance(local, type) and _named(local, qualname):
            return local
        everywhere = {id(cls): cls for root in (BaseModel, enum.Enum, tuple)
                      for cls in subclasses(root) if _named(cls, qualname)}
        if "." not in qualname:  # dataclasses have no common base: the trusted modules' tops
            for module_name, namespace in list(sys.modules.items()):
                candidate = (_attribute_path(namespace, qualname)
                             if self.resolver.is_trusted(module_name) else None)
                if isinstance(candidate, type) and _named(candidate, qualname):
                    everywhere[id(candidate)] = candidate
        trusted = [cls for cls in everywhere.values() if self.resolver.is_trusted(cls.__module__)]
        return (_one(qualname, trusted, within=self.name)
                or _one(qualname, list(everywhere.values()), within=self.name))

    def unreadable(self, node: ast.expr) -> UnknownTypeError:
        return UnknownTypeError(
            f"cannot rebuild {self.name!r}: {ast.unparse(node)!r} is not a type argument flujo "
            "reads (builtins, typing forms, Literal values and classes by name); register the "
            "parametrization with register_type(...)", tag=self.name)


def _is_generic_origin(cls: object) -> bool:
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        return False
    metadata = cls.__pydantic_generic_metadata__
    return metadata["origin"] is None and bool(metadata["parameters"])


def _named(cls: type, qualname: str) -> bool:
    if auto_kind(cls) is None:
        return False
    if _is_generic_origin(cls):
        return qualname in (cls.__name__, cls.__qualname__)
    parametrized = issubclass(cls, BaseModel) and \
        cls.__pydantic_generic_metadata__["origin"] is not None
    return cls.__qualname__ == qualname and not parametrized


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None
