"""Which class a stored ``module:QualName`` names, and when a module may be imported to find it.

Without configuration nothing is imported: a name resolves only to a class the running process
has already defined, found through the ``__dict__`` of modules in ``sys.modules`` and of
classes, read by ``ModuleType``'s and ``type``'s own descriptors (so no ``__getattr__``,
``__getattribute__``, property or lazy loader of theirs runs), or among the subclasses of
``BaseModel``, ``Enum`` and ``tuple``.

The application may *trust* module prefixes (``TypeRegistry(trusted_modules=...)``,
``$FLUJO_TRUSTED_MODULES``, ``[tool.flujo] trusted_modules`` in ``./pyproject.toml``). A name
whose module is a trusted prefix or lies below one may then

* import that module when the process has not imported it yet: the SDKs define their classes
  in submodules that their packages import lazily (``langchain_core.messages.human``);
* create a parametrization of a generic pydantic model (``Page[Row]``, openai's
  ``ParsedChatCompletion[~...ResponseFormatT]``, which exist only once something asked for
  them), the type arguments parsed from the stored name (``ast``, never ``eval``; spelt as
  ``_generics`` writes them) and resolved as builtins, ``typing`` forms, literal values, type
  variables and classes; the class made must carry exactly the stored name, and one registry
  makes at most ``MAX_REBUILT``.

A module outside every prefix is never imported, nor a dunder module (``pkg.__main__``) under
one, and a parametrization outside them never created, whatever the data says.
"""

from __future__ import annotations

import ast
import enum
import importlib
import os
import sys
import threading
import tomllib
import typing
import weakref
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, Final, TypeGuard, TypeVar

from pydantic import BaseModel

from ..exceptions import RegistrationError, UnknownTypeError
from ._auto import auto_kind, auto_name
from ._generics import ARGUMENT_NAMES, legacy_name

TRUSTED_MODULES_ENV = "FLUJO_TRUSTED_MODULES"
_PYPROJECT = Path("pyproject.toml")
_MAX_PARAMETRIZED_NAME = 1000  # longer type-argument text is not parsed (hostile data)
_MAX_ARGUMENT_NODES = 200
MAX_REBUILT = 256  # parametrizations one registry makes from stored names: bounded work

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


def pyproject_settings() -> tuple[dict[str, Any], str]:
    """The ``[tool.flujo]`` table of ``./pyproject.toml`` (``{}`` when there is none) and the
    file's path for messages; RegistrationError when the file cannot be read."""
    if not _PYPROJECT.is_file():
        return {}, str(_PYPROJECT)
    where = str(_PYPROJECT.resolve())
    try:
        document = tomllib.loads(_PYPROJECT.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RegistrationError(f"cannot read {where}: {exc}") from exc
    tool = document.get("tool")
    table = tool.get("flujo") if isinstance(tool, dict) else None
    return (table if isinstance(table, dict) else {}), where


def configured_prefixes() -> tuple[str, ...]:
    """The prefixes of ``$FLUJO_TRUSTED_MODULES`` and of ``./pyproject.toml``'s ``[tool.flujo]``.

    The variable is a comma-separated list; the table's ``trusted_modules`` a list of strings.
    """
    text = os.environ.get(TRUSTED_MODULES_ENV, "")
    found = check_prefixes(
        [part.strip() for part in text.split(",") if part.strip()], f"${TRUSTED_MODULES_ENV}")
    table, where = pyproject_settings()
    listed = table.get("trusted_modules", [])
    if not isinstance(listed, list):
        raise RegistrationError(
            f"{where}: [tool.flujo] trusted_modules must be a list of module names, "
            f"got {listed!r}")
    source = f"{where} [tool.flujo] trusted_modules"
    return found + tuple(p for p in check_prefixes(listed, source) if p not in found)


class NameResolver:
    """Finds the class a ``module:QualName`` names (see the module docstring).

    ``trusted``: the trusted prefixes, or None to read them from the configuration
    (``configured_prefixes``) the first time a name is not already defined.
    """

    def __init__(self, trusted: Iterable[str] | None) -> None:
        self._lock = threading.Lock()
        self._trusted: tuple[str, ...] | None = (
            None if trusted is None else check_prefixes(trusted, "trusted_modules"))
        # Classes this process wrote under their derived name: found again without a search,
        # including those no search finds (defined in a function).
        self.seen: weakref.WeakValueDictionary[str, type] = weakref.WeakValueDictionary()
        self.rebuilt = 0  # parametrizations made from stored names (at most MAX_REBUILT)

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
        # Even when sys.modules has it: another thread may be running its code, and the
        # import waits for that to finish.
        import_trusted(module_name, name)
        found = self._defined(name, module_name, qualname)
        if found is None and qualname.endswith("]") and "[" in qualname:
            found = _Parametrizer(self, name).parametrize(module_name, qualname)
        return found

    def count_rebuilt(self, name: str) -> None:
        """Count one parametrization made from a stored name; refuse past the limit."""
        with self._lock:
            if self.rebuilt >= MAX_REBUILT:
                raise UnknownTypeError(
                    f"cannot rebuild {name[:200]!r}: this registry already made {MAX_REBUILT} "
                    "parametrizations from stored names; register the ones you store "
                    "(register_type(Page[Row], name=...))", tag=name[:200])
            self.rebuilt += 1

    def _defined(self, name: str, module_name: str, qualname: str) -> type | None:
        candidates: dict[int, type] = {}
        seen = self.seen.get(name)
        if seen is not None:
            return seen
        module = sys.modules.get(module_name)  # only modules already imported
        if module is not None and "<locals>" not in qualname:
            found = attribute_path(module, qualname)
            if is_class(found) and auto_name(found) == name:
                candidates[id(found)] = found
        if not candidates:
            if "[" in qualname:  # only parametrizations can carry such a name
                head = qualname[:qualname.index("[")].rpartition(".")[2] + "["
                pool: Iterable[type] = (c for c in subclasses(BaseModel)
                                        if c.__name__.startswith(head))
            else:
                pool = (c for root in (BaseModel, enum.Enum, tuple) for c in subclasses(root)
                        if c.__qualname__ == qualname)
            legacy: dict[int, type] = {}
            for cls in pool:
                if auto_name(cls) == name:
                    candidates[id(cls)] = cls
                # pydantic's names, which flujo wrote before: taken when nothing has the name
                elif (cls.__qualname__ == qualname and cls.__module__ == module_name) \
                        or _legacy_name(cls) == name:
                    legacy[id(cls)] = cls
            candidates = candidates or legacy
        return _one(name, _distinct([c for c in candidates.values() if auto_kind(c) is not None]))


def _legacy_name(cls: type) -> str | None:
    metadata = cls.__dict__.get("__pydantic_generic_metadata__")
    origin = metadata.get("origin") if isinstance(metadata, dict) else None
    return legacy_name(cls, origin) if isinstance(origin, type) else None


def _distinct(classes: list[type]) -> list[type]:
    """``classes`` without parametrizations equal to an earlier one: ``Box[Optional[int]]``
    and ``Box[int | None]`` are two classes of one name and the same fields."""
    kept: list[type] = []
    for cls in classes:
        metadata = getattr(cls, "__pydantic_generic_metadata__", None) \
            if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if metadata and metadata["origin"] is not None and any(
                getattr(k, "__pydantic_generic_metadata__", None) == metadata for k in kept):
            continue
        kept.append(cls)
    return kept


_TYPE_SPELLING: Final = (ast.Expression, ast.Subscript, ast.Name, ast.Attribute, ast.Tuple,
                         ast.Constant, ast.BinOp, ast.BitOr, ast.UnaryOp, ast.Invert, ast.UAdd,
                         ast.USub, ast.Load)


def spells_types(qualname: str) -> bool:
    """Whether a parametrization's qualified name only uses what a reader parses back (names,
    subscripts, unions, literal values, type variables): ``Annotated[int, Gt(gt=0)]`` does
    not."""
    try:
        tree = ast.parse(f"_{qualname[qualname.find('['):]}", mode="eval")
    except (SyntaxError, ValueError):
        return False
    return all(isinstance(node, _TYPE_SPELLING) for node in ast.walk(tree))


def subclasses(root: type) -> Iterable[type]:
    stack: list[type] = list(type.__subclasses__(root))
    while stack:
        cls = stack.pop()
        yield cls
        stack.extend(type.__subclasses__(cls))


def _is_module_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


_MODULE_DICT: Final[Any] = vars(ModuleType)["__dict__"]
_CLASS_DICT: Final[Any] = vars(type)["__dict__"]


def is_class(found: object) -> TypeGuard[type]:
    """Whether ``found`` is a class, by its type alone: ``isinstance(found, type)`` would
    read ``found.__class__`` when its type is not a class's, running a property or a
    ``__getattr__`` of an object the data named (a lazy settings object, a proxy)."""
    return issubclass(type(found), type)


def attribute_path(start: object, dotted: str) -> object:
    """``start.a.b`` through the ``__dict__`` of modules and classes only, read by their
    types' own descriptors: no ``__getattr__``, ``__getattribute__``, property or lazy module
    loader of theirs runs."""
    found: object = start
    for part in dotted.split("."):
        kind = type(found)  # type(): isinstance could ask the object for its __class__
        if issubclass(kind, ModuleType):
            namespace = _MODULE_DICT.__get__(found)
        elif issubclass(kind, type):
            namespace = _CLASS_DICT.__get__(found)
        else:
            return None
        found = namespace.get(part)
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


def import_trusted(module_name: str, name: str) -> None:
    """Import the trusted module a stored name names; any failure is an UnknownTypeError.

    Never a ``__main__`` or other dunder module: importing ``pkg.__main__`` runs a program.
    """
    if any(part.startswith("__") and part.endswith("__") for part in module_name.split(".")):
        raise UnknownTypeError(
            f"{name!r} names the module {module_name!r}, which flujo never imports", tag=name)
    try:
        importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # not found, the module's own code failing or exiting
        raise UnknownTypeError(
            f"the trusted module {module_name!r} (for {name[:200]!r}) cannot be imported: "
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
        if not isinstance(made, type) or name not in (auto_name(made),
                                                       legacy_name(made, origin)):
            made_name = auto_name(made) if isinstance(made, type) else repr(made)
            raise UnknownTypeError(
                f"rebuilding {name!r} gave {made_name!r}; register the parametrization with "
                f"register_type({origin.__qualname__}[...], name=...)", tag=name)
        return made

    def origin(self, module_name: str, origin_name: str) -> type[BaseModel] | None:
        module = sys.modules.get(module_name)
        top = attribute_path(module, origin_name) if module is not None else None
        if is_class(top):
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
        if _is_generic_origin(base):
            self.resolver.count_rebuilt(self.name)
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
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert | ast.UAdd | ast.USub) \
                and _dotted(node.operand) is not None:
            return self.type_variable(str(_dotted(node.operand)), node.op)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            left = self.argument(node.left, literal=False)
            return self.subscript(typing.Union, (left, self.argument(node.right, literal=False)))
        if isinstance(node, ast.Subscript):
            base = self.argument(node.value, literal=False)
            return self.subscript(base, self.argument(node.slice, literal=base is typing.Literal))
        dotted = _dotted(node)
        if dotted is None:
            raise self.unreadable(node)
        if dotted in ARGUMENT_NAMES:
            return ARGUMENT_NAMES[dotted]
        found = self.class_named(dotted)
        if found is None:
            raise UnknownTypeError(
                f"cannot rebuild {self.name!r}: no model, enum, dataclass or NamedTuple named "
                f"{dotted!r} is defined in this process; import the module that defines it",
                tag=self.name)
        return found

    def module(self, module_name: str) -> object:
        """The ``sys.modules`` entry a type argument names (None when there is none), the
        module imported first when trusted and not yet loaded; read it with attribute_path."""
        if module_name not in sys.modules and self.resolver.is_trusted(module_name):
            import_trusted(module_name, self.name)
        return sys.modules.get(module_name)

    def type_variable(self, dotted: str, variance: ast.unaryop) -> TypeVar:
        """The TypeVar ``~T`` (``+`` covariant, ``-`` contravariant) of a partial
        parametrization such as openai's ``ParsedChatCompletion[~...ResponseFormatT]``: one of
        the generic's module, or ``~module.T`` of its module; pydantic's names (no module) are
        looked for in the trusted modules already imported, and must find one."""
        wanted = (isinstance(variance, ast.UAdd), isinstance(variance, ast.USub))

        def fits(candidate: object, name: str) -> TypeVar | None:
            if isinstance(candidate, TypeVar) and candidate.__name__ == name and (
                    candidate.__covariant__, candidate.__contravariant__) == wanted:
                return candidate
            return None

        module_name, _, name = dotted.rpartition(".")
        if module_name:
            module = self.module(module_name)
            found = fits(attribute_path(module, name), name) if module is not None else None
            if found is None:
                raise UnknownTypeError(f"cannot rebuild {self.name!r}: no type variable "
                                       f"{dotted!r} is defined", tag=self.name)
            return found
        home = sys.modules.get(self.name.partition(":")[0])
        found = fits(attribute_path(home, name), name) if home is not None else None
        if found is not None:
            return found
        matches = {id(tv): tv for module_name, module in list(sys.modules.items())
                   if self.resolver.is_trusted(module_name)
                   and (tv := fits(attribute_path(module, name), name)) is not None}
        if len(matches) != 1:
            raise UnknownTypeError(
                f"cannot rebuild {self.name!r}: {len(matches) or 'no'} type variables named "
                f"{name!r} are defined in the trusted modules", tag=self.name)
        return next(iter(matches.values()))

    def class_named(self, dotted: str) -> type | None:
        """The model, enum, dataclass or NamedTuple a type argument names.

        flujo writes a class of the generic's module by its qualified name and any other with
        its module (``_generics``): the first is looked up in the generic's module, the second
        in its own (imported first when trusted). Names written by pydantic (flujo before 0.9)
        carry no module: such a name must then be one class's in the whole process.
        """
        home = sys.modules.get(self.name.partition(":")[0])
        local = attribute_path(home, dotted) if home is not None else None
        if is_class(local) and _named(local, dotted.rpartition(".")[2]):
            return local
        parts = dotted.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module_name, qualname = ".".join(parts[:cut]), ".".join(parts[cut:])
            module = self.module(module_name)
            found = attribute_path(module, qualname) if module is not None else None
            if is_class(found) and _named(found, qualname):
                return found
        everywhere = {id(cls): cls for root in (BaseModel, enum.Enum, tuple)
                      for cls in subclasses(root) if _named(cls, dotted)}
        return _one(dotted, list(everywhere.values()), within=self.name)

    def unreadable(self, node: ast.expr) -> UnknownTypeError:
        return UnknownTypeError(
            f"cannot rebuild {self.name!r}: {ast.unparse(node)!r} is not a type argument flujo "
            "reads (builtins, typing forms, Literal values and classes by name); register the "
            "parametrization with register_type(...)", tag=self.name)


def _is_generic_origin(cls: object) -> bool:
    if not (is_class(cls) and issubclass(cls, BaseModel)):
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
