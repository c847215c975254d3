"""What a ``strict=False`` read keeps of a tagged object naming no known type.

It is the stored data itself, as an ``UndecodedValue`` (a ``dict``), so that a process
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
# Lists of one model class (_codec.ROWS_NAME, MODELS_NAME): their v starts with its tag.
_BATCHES = ("rows@", "models@")


class UndecodedValue(dict[str, Any]):
    """A tagged object kept as stored by ``safe_deserialize(..., strict=False)``."""

    __slots__ = ()

    @property
    def tag(self) -> str:
        """The tag no known type answered to (``"myapp.Invoice@2"``)."""
        return str(self.get(_TAG, ""))


def written_back(value: UndecodedValue, manifest: dict[str, int] | None = None) -> dict[str, Any]:
    """The stored data of ``value``, to write again as it was; refused when it holds anchors
    or references (checked iteratively: the data is as deep as it was stored). The version
    of every tag inside goes into ``manifest``: older readers refuse what they cannot read
    from the manifest alone (a kept ``rows@3`` list, say)."""
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if type(node) is list:
            stack.extend(node)
        elif isinstance(node, dict):
            if _TAG in node:
                tag = node.get(_TAG)
                if tag == _REF_TAG or _ANCHOR in node:
                    raise SerializationError(
                        f"the undecoded {value.tag} holds shared references, whose numbers "
                        "belong to the document it was read from: it cannot be written again "
                        "on its own; read it with the type's code available")
                if manifest is not None and type(tag) is str:
                    _note_tag(manifest, tag)
                    body = node.get("v")
                    if tag.startswith(_BATCHES) and type(body) is list and body and \
                            type(body[0]) is str:  # the tag of the batch's model class
                        _note_tag(manifest, body[0])
            stack.extend(node.values())
    return dict(value)


def _note_tag(manifest: dict[str, int], tag: str) -> None:
    name, at, version = tag.rpartition("@")
    # a well-formed tag only (a malformed one is written back as it was, and refused by
    # every reader); a version beyond any real one is not a number a manifest may hold
    if at and name and version.isascii() and version.isdecimal() and len(version) <= 9:
        note_version(manifest, name, int(version))


def note_version(manifest: dict[str, int], name: str, version: int) -> None:
    """Note in a manifest that a document holds ``name`` at ``version``: the manifest
    keeps the newest version of each name (rows@2 and rows@3 may share one document).
    Here, below the codecs, because a value kept undecoded notes its own tags too."""
    if manifest.get(name, 0) < version:
        manifest[name] = version
