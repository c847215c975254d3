"""``migrate_all``: rewrite stored envelopes to the current versions and report the changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flujo.exceptions import BackendConfigError, FlujoError

from ._runid import validate_run_id
from .backends.base import EnvelopeStateBackend, StateBackend

__all__ = ["MigrationChange", "MigrationFailure", "MigrationReport", "migrate_all"]


@dataclass(frozen=True)
class MigrationChange:
    """One run that was (or, in a dry run, would be) rewritten."""

    run_id: str
    reasons: tuple[str, ...]
    from_revision: int
    to_revision: int | None  # None in a dry run


@dataclass(frozen=True)
class MigrationFailure:
    """One run that could not be migrated; its record was left untouched."""

    run_id: str
    error: FlujoError = field(repr=False)

    @property
    def message(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


@dataclass
class MigrationReport:
    """What ``migrate_all`` found and did."""

    dry_run: bool
    scanned: int = 0
    up_to_date: list[str] = field(default_factory=list)
    changed: list[MigrationChange] = field(default_factory=list)
    failed: list[MigrationFailure] = field(default_factory=list)
    #: Runs not examined because ``stop_on_failure`` stopped at a failure (left untouched).
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no run failed."""
        return not self.failed

    def summary(self) -> str:
        verb = "would rewrite" if self.dry_run else "rewrote"
        lines = [
            f"scanned {self.scanned} run(s): {len(self.up_to_date)} up to date,"
            f" {verb} {len(self.changed)}, {len(self.failed)} failed"
        ]
        lines += [f"  {c.run_id}: {'; '.join(c.reasons)}" for c in self.changed]
        lines += [f"  FAILED {f.run_id}: {f.message}" for f in self.failed]
        return "\n".join(lines)


async def migrate_all(
    backend: StateBackend, *, dry_run: bool = False, stop_on_failure: bool = False,
    progress: Callable[[int, int], None] | None = None, report: MigrationReport | None = None,
) -> MigrationReport:
    """Bring every stored envelope to the current versions.

    A run is rewritten when its envelope format, state schema version, any type version in its
    manifest, its codec (compression/encryption) or its encryption key id differs from what the
    backend writes now. Every such run is fully decoded first, so a dry run also finds the runs
    that *cannot* be migrated (missing migration step, newer version, damaged record, missing
    key). Each rewrite is a compare-and-set on the revision that was read: a run saved
    concurrently is reported as failed (StateConflictError) rather than overwritten; run
    ``migrate_all`` again. Failures never modify the stored record.

    ``stop_on_failure=True`` stops at the first failed run: the runs after it are neither read
    nor written, and are listed in ``report.skipped``. ``progress(done, total)`` is called
    after each run has been examined. ``report``, an empty ``MigrationReport(dry_run=...)``
    of the caller's, is filled as the runs are examined and returned: when the migration is
    interrupted (cancelled, Ctrl-C), it still tells which runs were rewritten.
    """
    if not isinstance(backend, EnvelopeStateBackend):
        raise BackendConfigError(
            "migrate_all needs a backend built on EnvelopeStateBackend,"
            f" got {type(backend).__name__}"
        )
    if report is None:
        report = MigrationReport(dry_run=dry_run)
    elif report.dry_run != dry_run or report.scanned or report.changed or report.failed:
        raise BackendConfigError(f"migrate_all(report=...) takes a new MigrationReport with"
                                 f" dry_run={dry_run}, got {report!r:.200}")
    run_ids = await backend.list_run_ids()
    for done, run_id in enumerate(run_ids, 1):
        await _migrate_one(backend, run_id, report)
        if progress is not None:
            progress(done, len(run_ids))
        if stop_on_failure and report.failed:
            report.skipped = run_ids[done:]
            break
    return report


async def _migrate_one(backend: EnvelopeStateBackend, run_id: str,
                       report: MigrationReport) -> None:
    report.scanned += 1
    try:
        validate_run_id(run_id)
        chain = await backend._read_chain(run_id)
        if chain is None:
            report.scanned -= 1  # deleted since it was listed
            return
        records = [record for record, _ in chain]
        envelope = records[-1]
        what = backend.describe(run_id)
        backend.codec.check_versions(envelope, what=what)  # newer than this code: fail
        reasons = backend.codec.chain_outdated(records)
        if not reasons:
            report.up_to_date.append(run_id)
            return
        state, _ = backend.codec.open_chain(records, what=what)
        new_revision = None
        if not report.dry_run:
            # A rewrite is not activity of the run: it keeps its updated_at (and so its
            # place in listings, most recently updated first); it is one whole state, so
            # reading the run needs none of the old records (an old key can go).
            new_revision = await backend._save_state(
                run_id, state, envelope.revision, None, updated_at=envelope.updated_at,
                whole=True)
    except FlujoError as exc:
        report.failed.append(MigrationFailure(run_id, exc))
        return
    report.changed.append(
        MigrationChange(run_id, tuple(reasons), envelope.revision, new_revision)
    )
