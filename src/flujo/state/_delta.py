"""The difference between two JSON documents, as a short list of edits, and its application.

A delta checkpoint stores what a step changed in the run's tagged payload as edits of the
JSON data (never of Python objects): applying them to the data of the previous checkpoint
gives, exactly, the data a whole-state save would have written. Exactly means with the same
JSON types: ``1``, ``1.0``, ``true`` and ``0.0``/``-0.0`` are different values here, though
Python's ``==`` calls them equal, so every "unchanged" verdict is confirmed on the JSON text.

An edit is a JSON array, its first element saying what it does, its second the path (keys of
objects and indexes of arrays, from the root)::

    ["=", path, value]     the value at path becomes value (path [] replaces the document)
    ["-", path]            the object key at the end of path is removed
    ["+", path, [values]]  the array at path gets values appended

Objects keep their key order: where a diff cannot keep it with these edits (a key removed and
added again moves to the end), the object is replaced as a whole.
"""

from __future__ import annotations

from typing import Any

from flujo.exceptions import CorruptStateError

from ._jsonio import dumps

__all__ = ["apply_edits", "diff"]

Edit = list[Any]
Path = list[str | int]

# A same-length array whose elements mostly changed is replaced whole: its edits would be
# longer than the array itself.
_MOST = 0.5


def _same(old: Any, new: Any) -> bool:
    """Equal as JSON, types included (``==`` says ``1 == 1.0 == True``)."""
    if old is new:
        return True
    if type(old) is not type(new) or old != new:
        return False
    if isinstance(old, str):
        return True
    return dumps(old) == dumps(new)


def diff(old: Any, new: Any) -> list[Edit]:
    """The edits that turn ``old`` into ``new`` (both JSON data; neither is changed)."""
    edits: list[Edit] = []
    _diff(old, new, [], edits)
    return edits


def _diff(old: Any, new: Any, path: Path, edits: list[Edit]) -> None:
    if _same(old, new):
        return
    if type(old) is dict and type(new) is dict:
        _diff_object(old, new, path, edits)
    elif type(old) is list and type(new) is list:
        _diff_array(old, new, path, edits)
    else:
        edits.append(["=", path, new])


def _diff_object(old: dict[str, Any], new: dict[str, Any], path: Path,
                 edits: list[Edit]) -> None:
    kept = [key for key in old if key in new]
    if list(new)[:len(kept)] != kept:  # the order of the kept keys changed
        edits.append(["=", path, new])
        return
    for key in old:
        if key not in new:
            edits.append(["-", [*path, key]])
    for key, value in new.items():
        if key in old:
            _diff(old[key], value, [*path, key], edits)
        else:
            edits.append(["=", [*path, key], value])


def _diff_array(old: list[Any], new: list[Any], path: Path, edits: list[Edit]) -> None:
    if len(new) > len(old) and _same(old, new[:len(old)]):
        edits.append(["+", path, new[len(old):]])
        return
    if len(new) != len(old):
        edits.append(["=", path, new])
        return
    changed = [i for i in range(len(new)) if not _same(old[i], new[i])]
    if len(changed) > len(new) * _MOST:
        edits.append(["=", path, new])
        return
    for i in changed:
        _diff(old[i], new[i], [*path, i], edits)


def apply_edits(data: Any, edits: Any, *, what: str, copying: bool = False) -> Any:
    """Apply ``edits`` to ``data`` in place and return the result (a path ``[]`` replaces the
    document). ``data`` must be owned by the caller: freshly parsed, shared with nothing.
    With ``copying``, ``data`` is left as it is: each list and dict an edit changes, and
    those on the way to it, are copied (shallow) first, and the rest is shared.

    Edits that do not fit the data (a path through a missing key, an index out of range, an
    unknown edit) mean a damaged record: CorruptStateError naming the record and the path."""
    copies: set[int] | None = set() if copying else None
    if copies is not None and type(data) in (list, dict):
        data = _copy(data, copies)
    if not isinstance(edits, list):
        raise CorruptStateError(f"{what}: the delta's edits are not a list")
    for number, edit in enumerate(edits):
        if not isinstance(edit, list) or len(edit) not in (2, 3) or edit[0] not in ("=", "-", "+") \
                or not isinstance(edit[1], list) or len(edit) != (2 if edit[0] == "-" else 3):
            raise CorruptStateError(f"{what}: edit {number} of the delta is not an edit:"
                                    f" {str(edit)[:80]}")
        kind, path = edit[0], edit[1]
        if not path:
            if kind == "=":
                data = edit[2]
            elif kind == "+" and type(data) is list and type(edit[2]) is list:
                data.extend(edit[2])  # (copied above when copying)
            else:
                raise _misfit(what, path)
            continue
        parent = data
        for step in path[:-1]:
            child = _child(parent, step, what, path)
            if copies is not None and id(child) not in copies and type(child) in (list, dict):
                child = parent[step] = _copy(child, copies)
            parent = child
        last = path[-1]
        if kind == "=":
            _set(parent, last, edit[2], what, path)
        elif kind == "-":
            if type(parent) is not dict or type(last) is not str or last not in parent:
                raise _misfit(what, path)
            del parent[last]
        else:
            target = _child(parent, last, what, path)
            if type(target) is not list or type(edit[2]) is not list:
                raise _misfit(what, path)
            if copies is not None and id(target) not in copies:
                target = parent[last] = _copy(target, copies)
            target.extend(edit[2])
    return data


def _copy(container: Any, copies: set[int]) -> Any:
    """A shallow copy of a list or dict, noted as owned by the edits being applied."""
    copied = container.copy()
    copies.add(id(copied))
    return copied


def _child(parent: Any, step: Any, what: str, path: Path) -> Any:
    if type(parent) is dict and type(step) is str and step in parent:
        return parent[step]
    if type(parent) is list and type(step) is int and 0 <= step < len(parent):
        return parent[step]
    raise _misfit(what, path)


def _set(parent: Any, last: Any, value: Any, what: str, path: Path) -> None:
    fits = (type(parent) is dict and type(last) is str) or (
        type(parent) is list and type(last) is int and 0 <= last < len(parent))
    if not fits:
        raise _misfit(what, path)
    parent[last] = value


def _misfit(what: str, path: Path) -> CorruptStateError:
    shown = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)[:200]
    return CorruptStateError(f"{what}: the delta edits {shown}, which the data it applies to"
                             " does not have; the record or its chain is damaged")
