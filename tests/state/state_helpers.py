"""Helpers shared by the state-layer tests (imported by conftest.py and test modules)."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import flujo

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_dsn() -> str:
    return os.environ.get("FLUJO_TEST_POSTGRES_DSN", DEFAULT_DSN)


@dataclass(frozen=True)
class PostgresTarget:
    dsn: str
    schema: str

    def new_table(self) -> str:
        return f"t_{uuid.uuid4().hex[:16]}"


def subprocess_env() -> dict[str, str]:
    """The environment for worker subprocesses: this flujo importable, output unbuffered."""
    src = str(Path(flujo.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    return env


WORKER = Path(__file__).with_name("_worker.py")
PYTHON = sys.executable
