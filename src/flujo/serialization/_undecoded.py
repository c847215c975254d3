"""What a ``strict=False`` read keeps of a tagged object naming no known type.

It is the stored data itself, as an :class:`UndecodedValue` (a ``dict``), so that a process
without the type (a CLI, a worker missing an optional library) can read the rest of a value
and write it back unchanged: the encoder writes an ``UndecodedValue`` out exactly as it was
stored, where a plain dict holding a ``$t`` key would be escaped (``dict@1``) and no longer
stand for the value. Stored data holding anchors or references cannot be written back alone
(their numbers belong to the document it came from): that write is refused.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import SerializationError

_TAG = "$t"
_ANCHOR = "id"
_REF_TAG = "ref@1"


class UndecodedValue(dict[str, Any]):
    """A tagged object kept as stored by ``safe_deserialize(..., strict=False)``."""

    __slots__ = ()

    @property
    def tag(self) -> str:
        """The tag no known type answered to (``"myapp.Invoice@2"``)."""
        return str(self.get(_TAG, ""))


def written_back(value: UndecodedValue) -> dict[str, Any]:
    """The stored data of ``value``, to write again as it was; refused when it holds anchors
    or references (checked iteratively: the data is as deep as it was stored)."""
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if type(node) is list:
            stack.extend(node)
        elif isinstance(node, dict):
            if _TAG in node and (node.get(_TAG) == _REF_TAG or _ANCHOR in node):
                raise SerializationError(
                    f"the undecoded {value.tag} holds shared references, whose numbers "
                    "belong to the document it was read from: it cannot be written again on "
                    "its own; read it with the type's code available")
            stack.extend(node.values())
    return dict(value)
