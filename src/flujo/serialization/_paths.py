"""Where a value failed: the path an error names (``$.records[3].price``).

Containers note their segment while the error unwinds through them (``note_path``), innermost
first; the outermost call turns the notes into the error's ``path`` (``finish_path``), and a
repeated object on the way is a cycle. Nothing here runs unless something failed.
"""

from __future__ import annotations

from ..exceptions import CircularReferenceError, NestingTooDeepError, SerializationError

__all__ = ["finish_path", "key_segment", "note_path"]


def key_segment(key: object) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f".{key}"
    return f"[{key!r}]"


def note_path(exc: SerializationError, segment: str | None, obj: object) -> None:
    """Record, while unwinding, where the failure happened (innermost first)."""
    trail: list[tuple[str | None, object]] | None = getattr(exc, "_trail", None)
    if trail is None:
        trail = []
        exc._trail = trail  # type: ignore[attr-defined]
    elif segment is None and obj is not None and trail[-1][0] is None and trail[-1][1] is obj:
        # Noted by a custom plan and again by Encoder.encode around it: one level, not a
        # cycle (which is what a repeated object means).
        return
    trail.append((segment, obj))


def finish_path(exc: SerializationError) -> SerializationError:
    """Turn the unwinding notes into ``exc.path``; a repeated object means a cycle."""
    trail: list[tuple[str | None, object]] = list(reversed(getattr(exc, "_trail", [])))
    if not trail:
        return exc
    segments: list[str] = []
    seen: dict[int, int] = {}
    for position, (segment, obj) in enumerate(trail):
        if isinstance(exc, NestingTooDeepError) and obj is not None:
            first = seen.setdefault(id(obj), position)
            if first != position:
                ancestor = "$" + "".join(s for s, _ in trail[:first] if s)
                here = "$" + "".join(segments)
                cycle = CircularReferenceError(
                    f"circular reference: the {type(obj).__name__} here is its own ancestor "
                    f"at {ancestor}",
                    path=here,
                )
                return cycle
        if segment:
            segments.append(segment)
    set_path(exc, "$" + "".join(segments))
    return exc


def set_path(exc: SerializationError, path: str) -> None:
    """Move ``exc`` to ``path``: the attribute and the ``(at ...)`` ending of its message."""
    suffix = f" (at {exc.path})"
    message = str(exc.args[0]) if exc.args else ""
    if message.endswith(suffix):
        message = message[: -len(suffix)]
    exc.path = path
    exc.args = (f"{message} (at {path})", *exc.args[1:])
