"""The zoo needs the ``zoo`` extra (``pip install -e '.[dev]'`` installs it). Without it the
zoo is not collected (the session header says so), unless ``FLUJO_REQUIRE_ZOO`` is set (CI),
where the session fails."""

from __future__ import annotations

import importlib.util
import os

import pytest

PACKAGES = ["openai", "anthropic", "httpx2", "langchain_core", "pydantic_ai", "mcp",
            "google.genai", "pydantic_settings", "pydantic_extra_types", "email_validator",
            # what pydantic-extra-types[all] brings for the types the zoo stores
            "pycountry", "phonenumbers", "ulid", "semver", "bson", "pendulum"]


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:
        return True


MISSING = [name for name in PACKAGES if _missing(name)]
if MISSING and os.environ.get("FLUJO_REQUIRE_ZOO"):
    raise pytest.UsageError(
        f"FLUJO_REQUIRE_ZOO is set but the zoo extra is not installed (missing: {MISSING})")
collect_ignore_glob = ["test_*.py"] if MISSING else []


def pytest_report_header() -> str | None:
    if MISSING:
        return f"zoo: not collected, the zoo extra is not installed (missing: {MISSING})"
    return None
