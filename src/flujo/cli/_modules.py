"""The application's modules, imported so its types are registered before stored data is read.

The operator names them (``--module NAME``, repeatable) or lists them once in ``./pyproject.toml``::

    [tool.flujo]
    modules = ["myapp.models"]

Stored data never names a module to import. Used by ``flujo schema`` and ``flujo state``. The
current directory is searched first, as ``python -m`` searches it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from ..exceptions import RegistrationError
from ..serialization import pyproject_settings
from ._output import _UsageError

__all__ = ["configured_modules", "import_application_modules"]


def configured_modules() -> list[str]:
    """``[tool.flujo] modules`` of ./pyproject.toml (``[]`` when there is none)."""
    try:
        # The one reader of the table, which also holds trusted_modules.
        table, _ = pyproject_settings()
    except RegistrationError as exc:
        raise _UsageError(str(exc)) from exc
    modules = table.get("modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise _UsageError("[tool.flujo] modules in pyproject.toml must be a list of module names")
    return modules


def import_application_modules(names: Sequence[str]) -> list[ModuleType]:
    """Import ``names`` (default: ``configured_modules``) and return the modules.

    Raises the CLI's usage error when the configuration cannot be read or a module cannot be
    imported (an import error, or the module's own code failing).
    """
    modules: list[ModuleType] = []
    wanted = list(names or configured_modules())
    if wanted:
        _current_directory_on_path()
    for name in wanted:
        try:
            modules.append(importlib.import_module(name))
        except (Exception, SystemExit) as exc:  # an import error, or the module's own code
            hint = ""
            if isinstance(exc, ModuleNotFoundError) and exc.name is not None and (
                    name == exc.name or name.startswith(exc.name + ".")):
                hint = (f" (looked in the current directory, {_cwd() or '(removed)'}, and the"
                        " installed packages: run flujo from the folder that holds it, or"
                        " install it)")
            raise _UsageError(
                f"cannot import module {name!r}: {type(exc).__name__}: {exc}{hint}"
            ) from exc
    return modules


def _cwd() -> str | None:
    """The current directory, or None when it was removed."""
    try:
        return str(Path.cwd())
    except OSError:
        return None


def _current_directory_on_path() -> None:
    """Put the current directory first on ``sys.path``, as ``python -m``, alembic and uvicorn
    do: ``--module opsapp`` finds ``./opsapp.py``. (The ``flujo`` script's own path entry is
    its ``bin`` folder, where no application lives.)"""
    here = _cwd()
    if here is None:  # removed: nothing to search there
        return
    if not any(entry in ("", ".", here) for entry in sys.path):
        sys.path.insert(0, here)
