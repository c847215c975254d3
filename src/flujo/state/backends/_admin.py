"""Upstream flujo's SQLite admin calls, as thin wrappers over ``list_runs`` and deletion.

Upstream 0.4.x gave its ``SQLiteBackend`` four maintenance calls that applications used for
dashboards and clean-up jobs. They are kept here, on every built-in backend, with upstream's
names, arguments and result keys. The statistics come from the listing index; the rows of
``list_workflows`` and ``get_failed_workflows`` also read each record's plain fields (its
version, step, error), decoding no value, so no application type is needed. What flujo does
not track (``execution_time_ms``, ``memory_usage_mb``) is ``None``, as is what cannot be read
without a key (an encrypted record); ``pipeline_id`` (upstream had both an id and a name) is
the pipeline name. New code
calls ``list_runs`` and ``delete_state`` directly (docs/backends.md shows how).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from flujo.exceptions import BackendConfigError, FlujoError

from ..models import RunSummary, utc_now

__all__ = ["UpstreamAdminCalls"]


class UpstreamAdminCalls:
    """Mixed into ``EnvelopeStateBackend``."""

    async def list_runs(self, status: str | None = None, pipeline_name: str | None = None,
                        limit: int | None = None, offset: int = 0) -> list[RunSummary]:
        raise NotImplementedError  # pragma: no cover - the backend's own

    async def delete_state(self, run_id: str) -> None:
        raise NotImplementedError  # pragma: no cover - the backend's own

    async def plain_state(self, run_id: str) -> Any:
        raise NotImplementedError  # pragma: no cover - the backend's own

    async def _workflow(self, row: RunSummary) -> dict[str, Any]:
        """A listing row with upstream's keys (and flujo's revision)."""
        fields: Any = None
        try:
            fields = await self.plain_state(row["run_id"])
        except FlujoError:  # damaged, or encrypted without the key: the index still says
            fields = None
        if not isinstance(fields, dict):
            fields = {}
        names = fields.get("step_names")
        error = fields.get("error")
        return {
            "run_id": row["run_id"], "pipeline_id": row["pipeline_name"],
            "pipeline_name": row["pipeline_name"], "status": row["status"],
            "created_at": row["created_at"], "updated_at": row["updated_at"],
            "revision": row["revision"],
            "pipeline_version": _text(fields.get("pipeline_version")),
            "current_step_index": _count(fields.get("current_step_index")),
            "total_steps": len(names) if isinstance(names, list) else None,
            "error_message": _text(error if error is not None else fields.get("error_message")),
            "execution_time_ms": None, "memory_usage_mb": None,
        }

    async def list_workflows(self, status: str | None = None, pipeline_id: str | None = None,
                             limit: int | None = None, offset: int = 0
                             ) -> list[dict[str, Any]]:
        """Upstream's listing: ``list_runs(status, pipeline_name=pipeline_id, ...)`` as dicts
        (most recently updated first; upstream ordered by creation)."""
        rows = await self.list_runs(status=status, pipeline_name=pipeline_id, limit=limit,
                                    offset=offset)
        return [await self._workflow(row) for row in rows]

    async def get_workflow_stats(self) -> dict[str, Any]:
        """Counts over every run: total, by status, created in the last 24 hours."""
        rows = await self.list_runs()
        since = utc_now() - timedelta(hours=24)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return {
            "total_workflows": len(rows),
            "status_counts": counts,
            "recent_workflows_24h": sum(1 for row in rows if row["created_at"] >= since),
            "average_execution_time_ms": None,  # not tracked by flujo
        }

    async def get_failed_workflows(self, hours_back: float = 24) -> list[dict[str, Any]]:
        """Failed runs last saved within ``hours_back`` hours, most recent first."""
        since = _ago(timedelta(hours=_amount("hours_back", hours_back)))
        rows = await self.list_runs(status="failed")
        return [await self._workflow(row) for row in rows if row["updated_at"] >= since]

    async def cleanup_old_workflows(self, days_old: float = 30) -> int:
        """Delete every run created more than ``days_old`` days ago, whatever its status, as
        upstream did; return how many were deleted."""
        before = _ago(timedelta(days=_amount("days_old", days_old)))
        rows = [row for row in await self.list_runs() if row["created_at"] < before]
        for row in rows:
            await self.delete_state(row["run_id"])
        return len(rows)


def _ago(span: timedelta) -> datetime:
    """``span`` before now, or the earliest time there is (a span reaching past year 1)."""
    try:
        return utc_now() - span
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def _amount(name: str, value: object) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value < 0 or value > 3_650_000):
        raise BackendConfigError(f"{name} must be a number >= 0 (of at most 10,000 years),"
                                 f" got {value!r}")
    return float(value)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: object) -> int | None:
    return value if type(value) is int else None
