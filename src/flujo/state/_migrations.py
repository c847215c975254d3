"""Whole-state migrations: changes that are not about one type.

Per-type changes (a field added to ``Order``) are migrations of that type's encoded form,
registered with the type in the serialization layer and applied by ``safe_deserialize``.
Changes to the *shape of the state itself* are registered here: renaming a context key,
moving a scratchpad entry, splitting a field. The application declares its current state
schema version; every envelope records the version it was written with; on read the steps
``v -> v+1`` are applied in order until the state is current.

Each step receives the state as a plain dict of ``WorkflowState`` fields whose values are
already decoded (exact Python types) and returns the new dict. A missing step, a step that
raises, or a record newer than the current version raises a typed error; the stored record is
never modified by a read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, overload

from flujo.exceptions import (
    FlujoError,
    FutureVersionError,
    MigrationError,
    MissingMigrationError,
    RegistrationError,
)

__all__ = [
    "StateMigration",
    "StateMigrations",
    "default_state_migrations",
    "register_state_migration",
    "set_state_version",
]

StateMigration = Callable[[dict[str, Any]], dict[str, Any]]


class StateMigrations:
    """A registry of whole-state migration steps and the current state schema version."""

    def __init__(self, current_version: int = 1) -> None:
        self._lock = threading.Lock()
        self._steps: dict[int, StateMigration] = {}
        self._current = 1
        self.set_current_version(current_version)

    @property
    def current_version(self) -> int:
        """The state schema version new records are written with."""
        return self._current

    def set_current_version(self, version: int) -> None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RegistrationError(f"state version must be an int >= 1, got {version!r}")
        self._current = version

    @overload
    def register(self, from_version: int) -> Callable[[StateMigration], StateMigration]: ...

    @overload
    def register(self, from_version: int, fn: StateMigration) -> StateMigration: ...

    def register(
        self, from_version: int, fn: StateMigration | None = None
    ) -> StateMigration | Callable[[StateMigration], StateMigration]:
        """Register the step ``from_version -> from_version + 1``; usable as a decorator."""
        if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
            raise RegistrationError(f"from_version must be an int >= 1, got {from_version!r}")

        def add(step: StateMigration) -> StateMigration:
            if not callable(step):
                raise RegistrationError(f"state migration {step!r} is not callable")
            with self._lock:
                if from_version in self._steps:
                    raise RegistrationError(
                        f"a state migration from version {from_version} is already registered"
                    )
                self._steps[from_version] = step
            return step

        return add if fn is None else add(fn)

    def steps(self) -> dict[int, StateMigration]:
        """The registered steps by ``from_version`` (a copy)."""
        with self._lock:
            return dict(self._steps)

    def missing_steps(self, oldest: int = 1) -> list[int]:
        """``from_version`` of every step needed to reach the current version that is absent."""
        with self._lock:
            return [v for v in range(oldest, self._current) if v not in self._steps]

    def migrate(self, state: dict[str, Any], from_version: int, *, what: str) -> dict[str, Any]:
        """Bring ``state`` (written at ``from_version``) up to the current version.

        ``what`` names the record in error messages (run id, file).
        """
        current = self._current
        if from_version > current:
            raise FutureVersionError(
                f"{what}: written with state schema version {from_version}, but this"
                f" application is at version {current}; upgrade the application to read it",
                path="$.state_version",
            )
        steps = self.steps()
        for version in range(from_version, current):
            step = steps.get(version)
            if step is None:
                raise MissingMigrationError(
                    f"{what}: no state migration from version {version} to {version + 1} is"
                    f" registered (needed to go from {from_version} to {current}); register one"
                    " with register_state_migration",
                    path="$.state_version",
                )
            try:
                migrated = step(state)
            except FlujoError as exc:
                exc.add_note(f"in state migration {version} -> {version + 1} of {what}")
                raise
            except Exception as exc:
                raise MigrationError(
                    f"{what}: state migration {version} -> {version + 1}"
                    f" ({getattr(step, '__qualname__', step)!s}) raised"
                    f" {type(exc).__name__}: {exc}",
                    path="$",
                ) from exc
            if not isinstance(migrated, dict):
                raise MigrationError(
                    f"{what}: state migration {version} -> {version + 1} returned"
                    f" {type(migrated).__name__}, expected the state dict",
                    path="$",
                )
            state = migrated
        return state


_DEFAULT = StateMigrations()


def default_state_migrations() -> StateMigrations:
    """The process-wide registry backends use unless given their own."""
    return _DEFAULT


def set_state_version(version: int) -> None:
    """Declare the application's current state schema version (default registry)."""
    _DEFAULT.set_current_version(version)


@overload
def register_state_migration(from_version: int) -> Callable[[StateMigration], StateMigration]: ...


@overload
def register_state_migration(from_version: int, fn: StateMigration) -> StateMigration: ...


def register_state_migration(
    from_version: int, fn: StateMigration | None = None
) -> StateMigration | Callable[[StateMigration], StateMigration]:
    """Register ``from_version -> from_version + 1`` in the default registry.

    Example::

        set_state_version(2)

        @register_state_migration(1)
        def rename_customer(state: dict) -> dict:
            ctx = state["pipeline_context"]
            ctx["customer_id"] = ctx.pop("client_id")
            return state
    """
    if fn is None:
        return _DEFAULT.register(from_version)
    return _DEFAULT.register(from_version, fn)
