"""Masking stored secrets (pydantic ``SecretStr``/``SecretBytes``, ``_pydantic_types``, and
pydantic.v1's, ``_library_types``)
wherever flujo shows stored data to a person: error messages, ``flujo state show``."""

from __future__ import annotations

from typing import Any, Final

from ..exceptions import NestingTooDeepError

SECRET_NAMES: Final = frozenset({"secretstr", "secretbytes", "pydantic.v1.SecretStr",
                                  "pydantic.v1.SecretBytes"})
MASK: Final = "**********"  # what pydantic shows of a secret


def mask_secrets(value: Any, budget: int = 1000) -> Any:
    """``value`` (stored data) with the value of every stored secret replaced by ``MASK``,
    for messages and displays; at most ``budget`` containers are looked into (a copy: the
    data itself is left as it is)."""
    left = [budget]

    def walk(node: Any) -> Any:  # recursion: stored data is nested at most max_depth
        if left[0] <= 0:
            return node
        if type(node) is dict:
            left[0] -= 1
            tag = node.get("$t")
            if type(tag) is str and tag.partition("@")[0] in SECRET_NAMES:
                return {**node, "v": MASK}
            return {key: walk(item) for key, item in node.items()}
        if type(node) is list:
            left[0] -= 1
            return [walk(item) for item in node]
        return node

    try:
        return walk(value)
    except RecursionError:  # deeper than any value flujo writes: never shown unmasked
        raise NestingTooDeepError("stored data nested too deeply to show with its secrets "
                                  "masked") from None


def preview(value: Any, limit: int = 80) -> str:
    """The start of stored data for an error message, stored secrets masked."""
    try:
        text = repr(mask_secrets(value))
    except NestingTooDeepError:
        text = f"<{type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
