"""Masking stored secrets (pydantic ``SecretStr``/``SecretBytes``, ``_pydantic_types``, and
pydantic.v1's, ``_library_types``)
wherever flujo shows stored data to a person: error messages, ``flujo state show``."""

from __future__ import annotations

from typing import Any, Final

from ..exceptions import NestingTooDeepError

SECRET_NAMES: Final = frozenset({"secretstr", "secretbytes", "pydantic.v1.SecretStr",
                                  "pydantic.v1.SecretBytes"})
MASK: Final = "**********"  # what pydantic shows of a secret


NOT_SHOWN: Final = "<not shown>"  # what a bounded mask_secrets leaves of data past its budget


def mask_secrets(value: Any, budget: int | None = None) -> Any:
    """``value`` (stored data) with the value of every stored secret replaced by ``MASK``,
    for messages and displays (a copy: the data itself is left as it is).

    Every key of every object is looked into, a tagged secret's other keys included, so data
    that merely looks like a secret (an extra field named ``$t``) hides nothing. ``budget``
    bounds the containers looked into, for a short preview: the containers past it are
    replaced by ``NOT_SHOWN``, never shown unmasked."""
    left = [budget if budget is not None else -1]

    def walk(node: Any) -> Any:  # recursion: stored data is nested at most max_depth
        if type(node) is list:
            if not spend():
                return NOT_SHOWN
            return [walk(item) for item in node]
        if type(node) is not dict:
            return node
        if not spend():
            return NOT_SHOWN
        tag = node.get("$t")
        secret = type(tag) is str and tag.partition("@")[0] in SECRET_NAMES
        return {key: MASK if secret and key == "v" else walk(item)
                for key, item in node.items()}

    def spend() -> bool:
        if left[0] == 0:
            return False
        left[0] -= 1
        return True

    try:
        return walk(value)
    except RecursionError:  # deeper than any value flujo writes: never shown unmasked
        raise NestingTooDeepError("stored data nested too deeply to show with its secrets "
                                  "masked") from None


def preview(value: Any, limit: int = 80) -> str:
    """The start of stored data for an error message, stored secrets masked."""
    try:
        text = repr(mask_secrets(value, budget=limit))  # a container shows at least 1 char
    except NestingTooDeepError:
        text = f"<{type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
