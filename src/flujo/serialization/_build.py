"""Which serialization modules mypyc compiles, and the switch back to their sources.

``setup.py`` compiles the modules in ``COMPILED_MODULES`` into C extensions when it can
(``FLUJO_COMPILE=0`` or a missing C compiler leave them as Python). Both forms behave the
same; the compiled one runs the encoder's and decoder's loops faster. With
``FLUJO_PURE_PYTHON=1`` in the environment when flujo is first imported, the ``.py`` sources
are imported even where compiled modules exist: for debugging with Python frames, and so the
test suite can check both forms.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from ..exceptions import PurePythonWarning

COMPILED_MODULES = ("_auto", "_builtins", "_codec", "_collector", "_custom", "_datetimes",
                    "_memo", "_objects", "_plans", "_rows", "_typed")
PURE_PYTHON_ENV = "FLUJO_PURE_PYTHON"

_PACKAGE = __name__.rpartition(".")[0]
_HERE = Path(__file__).parent


class _SourceFinder:
    """Finds the ``.py`` source of each compiled module, ahead of the extension."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != _PACKAGE or name not in COMPILED_MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, _HERE / f"{name}.py")


def compiled_modules() -> list[str]:
    """The serialization modules running as compiled code in this process (imports them)."""
    names = []
    for name in COMPILED_MODULES:
        module = importlib.import_module(f"{_PACKAGE}.{name}")
        if (module.__file__ or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            names.append(name)
    return names


def _compiled_installed() -> bool:
    """Whether the compiled form of the core lies beside the sources (without importing)."""
    return any((_HERE / f"_codec{suffix}").exists()
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


if os.environ.get(PURE_PYTHON_ENV) == "1":
    if not any(isinstance(finder, _SourceFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())
elif not _compiled_installed():
    warnings.warn(PurePythonWarning(
        "flujo's serialization core was not compiled when flujo was installed (no C compiler"
        " then?): it runs as pure Python, correct but 1.5 to 3 times slower. Reinstall with a"
        " C compiler present to compile it, or set FLUJO_PURE_PYTHON=1 to run pure Python on"
        " purpose without this warning."), stacklevel=2)
