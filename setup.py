"""Build script: compiles flujo's serialization core with mypyc.

The modules in ``COMPILED`` are plain, type-checked Python; mypyc turns them into C
extensions that run the encoder's and decoder's loops several times faster (see
docs/performance.md). Everything else, and every module when compiling is off, is installed
as Python and behaves the same:

- ``FLUJO_COMPILE=0`` installs pure Python;
- with no C compiler, the build says so and makes a pure-Python wheel (tagged
  ``py3-none-any``); a compilation that fails for another reason falls back to pure Python
  too. pip shows a build's messages only with ``-v``: flujo itself warns when it runs
  without its compiled core (``PurePythonWarning``), and ``flujo --version`` tells;
- an editable install (``pip install -e``) whose compiled modules beside the sources are
  newer than every compiled source reuses them: the Quickstart's second install does not
  compile again.

Project metadata lives in pyproject.toml.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

# The hot paths. flujo.serialization._build.COMPILED_MODULES names the same modules (a test
# checks the two agree), so the library can tell whether it runs compiled.
COMPILED = [
    "src/flujo/serialization/_auto.py",
    "src/flujo/serialization/_builtins.py",
    "src/flujo/serialization/_codec.py",
    "src/flujo/serialization/_collector.py",
    "src/flujo/serialization/_custom.py",
    "src/flujo/serialization/_datetimes.py",
    "src/flujo/serialization/_memo.py",
    "src/flujo/serialization/_objects.py",
    "src/flujo/serialization/_plans.py",
    "src/flujo/serialization/_rows.py",
    "src/flujo/serialization/_typed.py",
]


class OptionalBuildExt(build_ext):
    """build_ext that leaves pure Python behind when the C build fails, never a mix:
    compiled modules of one group load each other's code from a shared library."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError, a missing compiler...
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)
            _loud(f"compiling with mypyc failed ({exc}); installing PURE PYTHON (slower; "
                  "flujo warns at run time)")


_SOURCE_DIR = Path("src/flujo/serialization")
_GROUP_LIBRARY = "_compiled__mypyc"


def _c_compiler() -> str | None:
    """The C compiler the build would call (``$CC``, else Python's own), if it exists. On
    Windows setuptools finds MSVC itself (a failed build still falls back to pure Python)."""
    if os.name == "nt" and not os.environ.get("CC"):
        return "msvc"
    configured = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    words = shlex.split(configured)
    return shutil.which(words[0]) if words else None


def _compiled_in_place_are_current() -> bool:
    """Whether every compiled module (and their group's shared library) lies beside the
    sources, built for this Python, newer than every source of the package (mypyc copies
    constants of the modules it does not compile into the compiled code)."""
    suffix = EXTENSION_SUFFIXES[0]
    built = [_SOURCE_DIR / f"{Path(source).stem}{suffix}" for source in COMPILED]
    built.append(_SOURCE_DIR / f"{_GROUP_LIBRARY}{suffix}")
    if not all(path.exists() for path in built):
        return False
    newest_source = max(path.stat().st_mtime for path in _SOURCE_DIR.glob("*.py"))
    return min(path.stat().st_mtime for path in built) >= newest_source


def _loud(message: str) -> None:
    line = "=" * 78
    print(f"{line}\nflujo: {message}\n{line}", file=sys.stderr)


def compiled_extensions() -> list[object]:
    if os.environ.get("FLUJO_COMPILE", "1") == "0":
        # An earlier editable build left its extensions beside the sources, where they
        # would still be imported instead of them.
        for suffix in EXTENSION_SUFFIXES:
            for built in Path("src/flujo/serialization").glob(f"*{suffix}"):
                built.unlink()
        return []
    if {"egg_info", "dist_info"} & set(sys.argv) and not {
            "build_ext", "bdist_wheel", "editable_wheel", "build", "install", "develop",
            "sdist"} & set(sys.argv):
        return []  # pip asking for metadata or build requirements: nothing to compile yet
    if "editable_wheel" in sys.argv and _compiled_in_place_are_current():
        print("flujo: the compiled modules beside the sources are current; reusing them",
              file=sys.stderr)
        return []  # an editable install imports them from the sources' folder
    if _c_compiler() is None:
        _loud("no C compiler found ($CC or Python's own): building a PURE-PYTHON wheel. "
              "It works, but the serialization core runs 1.5-3x slower; flujo warns at run "
              "time (PurePythonWarning). Install a C compiler and reinstall to compile it.")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _loud("mypyc is not installed: building a PURE-PYTHON wheel (slower)")
        return []
    return list(mypycify(
        ["--ignore-missing-imports", "--follow-imports=silent", *COMPILED],
        opt_level="3", debug_level="0", group_name="flujo.serialization._compiled",
    ))


setup(ext_modules=compiled_extensions(), cmdclass={"build_ext": OptionalBuildExt})
