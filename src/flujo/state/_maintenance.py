"""``migrate_all``: rewrite stored envelopes to the current versions and report the changes."""

from __future__ import annotations

from dataclasses import dataclass, field

from flujo.exceptions import BackendConfigError, FlujoError

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
    """What :func:`migrate_all` found and did."""

    dry_run: bool
    scanned: int = 0
    up_to_date: list[str] = field(default_factory=list)
    changed: list[MigrationChange] = field(default_factory=list)
    failed: list[MigrationFailure] = field(default_factory=list)

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


async def migrate_all(backend: StateBackend, *, dry_run: bool = False) -> MigrationReport:
    """Bring every stored envelope to the current versions.

    A run is rewritten when its envelope format, state schema version, any type version in its
    manifest, its codec (compression/encryption) or its encryption key id differs from what the
    backend writes now. Every such run is fully decoded first, so a dry run also finds the runs
    that *cannot* be migrated (missing migration step, newer version, damaged record, missing
    key). Each rewrite is a compare-and-set on the revision that was read: a run saved
    concurrently is reported as failed (StateConflictError) rather than overwritten; run
    ``migrate_all`` again. Failures never modify the stored record.
    """
    if not isinstance(backend, EnvelopeStateBackend):
        raise BackendConfigError(
            "migrate_all needs a backend built on EnvelopeStateBackend,"
            f" got {type(backend).__name__}"
        )
    report = MigrationReport(dry_run=dry_run)
    for run_id in await backend.list_run_ids():
        report.scanned += 1
        try:
            envelope = await backend.read_envelope(run_id)
            if envelope is None:
                report.scanned -= 1  # deleted since it was listed
                continue
            what = backend.describe(run_id)
            backend.codec.check_versions(envelope, what=what)  # newer than this code: fail
            reasons = backend.codec.outdated(envelope)
            if not reasons:
                report.up_to_date.append(run_id)
                continue
            state = backend.codec.open(envelope, what=what)
            new_revision = None
            if not dry_run:
                new_revision = await backend.save_state(
                    run_id, state, expected_revision=envelope.revision
                )
        except FlujoError as exc:
            report.failed.append(MigrationFailure(run_id, exc))
            continue
        report.changed.append(
            MigrationChange(run_id, tuple(reasons), envelope.revision, new_revision)
        )
    return report
