"""Build script: compiles flujo's serialization core with mypyc.

The modules in ``COMPILED`` are plain, type-checked Python; mypyc turns them into C
extensions that run the encoder's and decoder's loops several times faster (see
docs/performance.md). Everything else, and every module when compiling is off, is installed
as Python and behaves the same:

- ``FLUJO_COMPILE=0`` installs pure Python;
- a failed compilation (no C compiler, say) falls back to pure Python, with a warning.

Project metadata lives in pyproject.toml.
"""

from __future__ import annotations

import os
import sys
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
    "src/flujo/serialization/_custom.py",
    "src/flujo/serialization/_datetimes.py",
    "src/flujo/serialization/_memo.py",
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
            print(f"flujo: compiling with mypyc failed ({exc}); installing pure Python",
                  file=sys.stderr)


def compiled_extensions() -> list[object]:
    if os.environ.get("FLUJO_COMPILE", "1") == "0":
        # An earlier editable build left its extensions beside the sources, where they
        # would still be imported instead of them.
        for suffix in EXTENSION_SUFFIXES:
            for built in Path("src/flujo/serialization").glob(f"*{suffix}"):
                built.unlink()
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("flujo: mypyc is not installed; installing pure Python", file=sys.stderr)
        return []
    return list(mypycify(
        ["--ignore-missing-imports", "--follow-imports=silent", *COMPILED],
        opt_level="3", debug_level="0", group_name="flujo.serialization._compiled",
    ))


setup(ext_modules=compiled_extensions(), cmdclass={"build_ext": OptionalBuildExt})
