"""Whether a class chose, with pickle hooks of its own, what pickle stores of it.

flujo stores an instance's state and restores it without running the class's code; a class
with its own ``__setstate__`` (or ``__reduce__``, ...) comes back from pickle through that
code, so flujo refuses it (docs/stored-objects.md) rather than bring it back differently.
"""

from __future__ import annotations

from typing import Final

#: The builtins flujo stores subclasses of (``_scalars``), with their instance state.
SCALAR_BASES: Final = (str, int, float, bytes)

_PICKLE_HOOKS: Final = ("__reduce_ex__", "__reduce__", "__getstate__", "__setstate__",
                        "__getnewargs_ex__", "__getnewargs__")


# The builtins whose subclasses flujo stores (``_scalars``): their hooks (``__getnewargs__``)
# are the standard ones that flujo's writing and reading follow.
_FOLLOWED_BASES: Final = frozenset(SCALAR_BASES)


def own_pickling_hook(cls: type) -> tuple[str, str] | None:
    """(class, hook) when ``cls`` has a pickle hook of its own, else None.

    A class with its own ``__setstate__`` (or ``__reduce__``, ...) comes back from pickle
    through that code, which flujo never runs when reading. pydantic's and the dataclasses
    module's hooks, and those of str, int, float and bytes, are the standard ones that
    flujo's reading follows.
    """
    for hook in _PICKLE_HOOKS:
        for klass in cls.__mro__[:-1]:
            if klass in _FOLLOWED_BASES:
                continue  # a mixin after it (``class S(str, Mixin)``) may still have one
            function = klass.__dict__.get(hook)
            if function is None:
                continue
            module = getattr(function, "__module__", None) or ""
            if module != "dataclasses" and not module.startswith("pydantic.") \
                    and not klass.__module__.startswith("pydantic."):
                return klass.__qualname__, hook
            break
    return None
