"""Stored envelope layouts, brought to the current one in memory (never written back here).

Version 0 is the bare state dict earlier flujo wrote; version 1 (flujo 0.10 and before) a
record of one document; version 2 adds checkpoint chains (docs/envelope.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flujo.exceptions import CorruptStateError, FutureVersionError, MissingMigrationError

from ._envelope import ENVELOPE_VERSION, FORMAT

__all__ = ["LEGACY_CONTEXT_MARKER", "upgrade_envelope"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LEGACY_KEYS = ("pipeline_context", "current_step_index", "step_history", "status")


def _timestamp(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return fallback
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return fallback


LEGACY_CONTEXT_MARKER = "context_is_plain_json"


def _from_legacy(data: dict[str, Any], fallback_time: datetime | None) -> dict[str, Any]:
    """Wrap a bare state dict written by earlier flujo (envelope version 0) in a v1 envelope."""
    fallback = fallback_time or _EPOCH
    created = _timestamp(data.get("created_at"), fallback)
    name = data.get("pipeline_name")
    status = data.get("status")
    return {
        "format": FORMAT,
        "envelope_version": 1,
        "run_id": data["run_id"],
        "revision": 1,
        "state_version": 1,
        "manifest": {},
        "pipeline_name": name if isinstance(name, str) else "",
        "status": status if isinstance(status, str) else "running",
        "created_at": created,
        "updated_at": _timestamp(data.get("updated_at"), created),
        "codec": "json",
        "key_id": None,
        # Earlier flujo stored the context as plain JSON (datetimes as strings...). The
        # marker survives a migration rewrite, so a runner still parses such a context.
        "payload": {**data, LEGACY_CONTEXT_MARKER: True},
    }


def upgrade_envelope(
    data: dict[str, Any], *, what: str, fallback_time: datetime | None = None
) -> tuple[dict[str, Any], int]:
    """Bring a stored envelope dict to the current layout; return it and its stored version.

    Version 0 is a bare state dict from earlier flujo. Future layout changes add a step to
    ``_UPGRADES`` (``n -> n+1``) and bump ``ENVELOPE_VERSION``; golden files under
    ``tests/golden/`` keep every released layout loading.
    """
    if "format" not in data:
        if isinstance(data.get("run_id"), str) and any(k in data for k in _LEGACY_KEYS):
            return _v1_to_v2(_from_legacy(data, fallback_time)), 0
        raise CorruptStateError(f"{what}: not a flujo state record (no 'format' field)")
    if data["format"] != FORMAT:
        raise CorruptStateError(
            f"{what}: not a flujo state record (format {data['format']!r}, expected {FORMAT!r})"
        )
    version = data.get("envelope_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CorruptStateError(f"{what}: invalid envelope_version {version!r}")
    stored = version
    if version > ENVELOPE_VERSION:
        raise FutureVersionError(
            f"{what}: written in envelope format version {version}; this flujo reads up to"
            f" version {ENVELOPE_VERSION}. Upgrade flujo to read it",
            path="$.envelope_version",
        )
    while version < ENVELOPE_VERSION:
        step = _UPGRADES.get(version)
        if step is None:
            raise MissingMigrationError(
                f"{what}: no upgrade from envelope format version {version}",
                path="$.envelope_version",
            )
        data = step(data)
        version = data["envelope_version"]
    return data, stored


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 added checkpoint chains: every version 1 record holds a whole state (in
    one document; see ``EnvelopeCodec.open``) and starts a chain of its own."""
    return {**data, "envelope_version": 2, "kind": "state", "base": data.get("revision"),
            "step": None, "attempt": None, "steps_done": 0}


# Envelope layout upgrades, by the version they upgrade from.
_UPGRADES: dict[int, Any] = {1: _v1_to_v2}
