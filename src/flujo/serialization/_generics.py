"""The stored name of a parametrized generic model, and the names its type arguments may use.

pydantic names ``Page[Row]`` after whichever module first wrote it at top level, and writes
the type arguments without their module, so ``Page[a.Row]`` and ``Page[b.Row]`` would share
one name. flujo names a parametrization after its generic (``models:Page[...]``) and writes
an argument class defined outside the generic's module with its module
(``models:Page[billing.invoices.Row]``), one in it by its qualified name (``Page[Row]``), as
pydantic does: names that mean one class wherever they are read. ``_names`` reads them back.
"""

from __future__ import annotations

import datetime
import decimal
import types
import typing
import uuid
from pathlib import Path
from typing import Any, Final, TypeVar

# Names a type argument may use besides classes: what pydantic's display of a type writes.
ARGUMENT_NAMES: Final[dict[str, Any]] = {
    **{cls.__name__: cls for cls in (
        int, str, float, bool, bytes, bytearray, complex, object, list, dict, set, frozenset,
        tuple, type, datetime.datetime, datetime.date, datetime.time, datetime.timedelta,
        decimal.Decimal, uuid.UUID, Path)},
    "NoneType": type(None), "None": None, "Any": Any, "Union": typing.Union,
    "Optional": typing.Optional, "Literal": typing.Literal, "List": typing.List,  # noqa: UP006
    "Dict": typing.Dict, "Set": typing.Set, "FrozenSet": typing.FrozenSet,  # noqa: UP006
    "Tuple": typing.Tuple, "Type": typing.Type,  # noqa: UP006
}
_NAMED: Final[dict[int, str]] = {
    id(value): name for name, value in ARGUMENT_NAMES.items() if value is not None}


def parametrized_name(cls: type, origin: type, arguments: tuple[Any, ...]) -> str:
    """``module:Origin[arguments]`` of the parametrization ``cls`` of ``origin``."""
    home = origin.__module__
    if arguments:
        text = ", ".join(_argument(argument, home) for argument in arguments)
        return f"{home}:{origin.__qualname__}[{text}]"
    return legacy_name(cls, origin)  # a parametrization without arguments: pydantic's name


def legacy_name(cls: type, origin: type) -> str:
    """The name flujo 0.9.0's first builds and pydantic give ``cls``: the arguments spelt by
    pydantic, without modules (still read, where it names one class)."""
    qualname = cls.__qualname__
    if qualname.startswith(origin.__name__ + "["):
        qualname = origin.__qualname__ + qualname[len(origin.__name__):]
    return f"{origin.__module__}:{qualname}"


def _argument(argument: Any, home: str) -> str:
    if argument is Ellipsis:
        return "..."
    if isinstance(argument, TypeVar):
        variance = "+" if argument.__covariant__ else "-" if argument.__contravariant__ else "~"
        module = getattr(argument, "__module__", None)
        where = "" if module in (home, None, "typing") else f"{module}."
        return f"{variance}{where}{argument.__name__}"
    named = _NAMED.get(id(argument))
    if named is not None:
        return named
    origin = typing.get_origin(argument)
    if origin is typing.Union or origin is types.UnionType:
        return f"Union[{', '.join(_argument(a, home) for a in typing.get_args(argument))}]"
    if origin is typing.Literal:
        return f"Literal[{', '.join(map(repr, typing.get_args(argument)))}]"
    if origin is not None and not isinstance(argument, type):
        head = getattr(argument, "_name", None) or getattr(origin, "__qualname__", None)
        inner = typing.get_args(argument)
        text = ", ".join(_argument(a, home) for a in inner) if inner else "()"
        return f"{head}[{text}]"
    if isinstance(argument, type):
        metadata = argument.__dict__.get("__pydantic_generic_metadata__")
        if isinstance(metadata, dict) and isinstance(metadata.get("origin"), type):
            inner_name = parametrized_name(argument, metadata["origin"],
                                           tuple(metadata.get("args", ())))
            module, _, qualname = inner_name.partition(":")
            return qualname if module == home else f"{module}.{qualname}"
        if argument.__module__ == home:
            return argument.__qualname__
        return f"{argument.__module__}.{argument.__qualname__}"
    return repr(argument)  # a form flujo does not read back: the name is refused when read
