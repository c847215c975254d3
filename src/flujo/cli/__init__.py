"""The ``flujo`` command line.

``flujo demo``; ``flujo schema export|check|docs``; ``flujo state ...`` (operators' tools).
Application types are loaded from the modules named by ``--module`` (repeatable) or by the
``modules`` list of a ``[tool.flujo]`` table in ``./pyproject.toml``; stored data never names
a module to import.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..exceptions import FlujoError
from ..schema import MODES
from ..serialization import default_registry
from ._modules import import_application_modules
from ._output import _UsageError
from ._state import add_state_commands
from ._terminal import visible

__all__ = ["main"]


def _load_types(modules: Sequence[str]) -> list[type]:
    """Import the application's modules (named by the operator, never by stored data); a
    module that cannot be imported is a usage error (exit 2), as under ``flujo state``."""
    imported = import_application_modules(modules)
    types: list[type] = []
    for module in imported:
        types.extend(v for v in vars(module).values()
                     if isinstance(v, type) and v.__module__ == module.__name__
                     and default_registry().codec_for_type(v) is not None)
    return types


def _cmd_schema_export(args: argparse.Namespace) -> int:
    from ..schema import export, stale_files

    types = _load_types(args.module)
    if args.check:
        stale = stale_files(Path(args.out), default_registry(), types)
        for name in stale:
            print(f"out of date: {Path(args.out) / name}")
        if stale:
            print("run `flujo schema export` and commit the result", file=sys.stderr)
        return 1 if stale else 0
    for path in export(Path(args.out), default_registry(), types):
        print(path)
    return 0


def _cmd_schema_check(args: argparse.Namespace) -> int:
    from ..schema import check_folder

    if not (Path(args.against) / "types").is_dir():
        print(f"flujo: {args.against} holds no committed schemas (no types/ folder); "
              "run `flujo schema export` there first", file=sys.stderr)
        return 2
    findings = check_folder(Path(args.against), default_registry(), _load_types(args.module),
                            args.mode)
    errors = [f for f in findings if f.severity == "error"]
    if args.format == "json":
        print(json.dumps({"mode": args.mode, "ok": not errors,
                          "findings": [f.as_dict() for f in findings]}, indent=2))
    else:
        for finding in findings:
            if finding.severity == "error" or args.verbose:
                print(f"{finding.severity:<5}  {finding.subject}  {finding.path}  "
                      f"{finding.reason}")
        print(f"{len(errors)} incompatible change(s) ({args.mode})"
              if errors else f"compatible ({args.mode})")
    return 1 if errors else 0


def _cmd_schema_docs(args: argparse.Namespace) -> int:
    from ..schema import collect, documents, render_html

    types = _load_types(args.module)
    out = Path(args.out)
    pages = documents(default_registry(), types, args.schema_base)
    stale = [name for name, text in pages.items()
             if not (out / name).exists() or (out / name).read_text("utf-8") != text]
    if args.check:
        for name in stale:
            print(f"out of date: {out / name}")
        return 1 if stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (out / name).write_text(pages[name], encoding="utf-8")
    if args.html:
        Path(args.html).write_text(render_html(collect(default_registry(), types)), "utf-8")
    print(f"{len(pages)} page(s) in {out} ({len(stale)} updated)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(Path(args.dir))


_DESCRIPTION = """\
flujo: durable, resumable pipelines whose stored state keeps its Python types.

  flujo demo                        run a small pipeline, store it, read it back
  flujo schema export|check|docs    JSON Schemas of the stored types, compatibility
  flujo state ...                   look at, fix and maintain a state store

Application types come from the modules named by --module (repeatable) or listed once in
./pyproject.toml ([tool.flujo] modules = [...]); the current directory is searched first.
Stored data never names a module to import."""

_MODULE_HELP = ("import this application module first, so its types are registered"
                " (repeatable; default: [tool.flujo] modules of ./pyproject.toml)")


def version_text() -> str:
    """``flujo --version``: the release, the Python, and which form of the serialization
    core runs (the compiled one a normal install builds, or the pure-Python fallback)."""
    from .. import __version__
    from ..serialization import PURE_PYTHON_ENV, compiled_modules

    compiled = compiled_modules()
    if compiled:
        core = f"compiled core: {len(compiled)} modules"
    elif os.environ.get(PURE_PYTHON_ENV) == "1":
        core = f"pure-Python core: {PURE_PYTHON_ENV}=1"
    else:
        core = "pure-Python core: nothing compiled, slower; reinstall with a C compiler"
    return (f"flujo {__version__} (Python {sys.version_info.major}.{sys.version_info.minor},"
            f" {core})")


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and whether the compiled core runs, and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flujo", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="persist typed state, read it back, show the types")
    demo.add_argument("--dir", default="flujo-demo",
                      help="the folder for the demo's state store (default: %(default)s)")
    demo.set_defaults(handler=_cmd_demo)
    schema = commands.add_parser("schema", help="JSON Schemas of the persisted formats")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    export = schema_commands.add_parser("export", help="write the schemas into a folder")
    export.add_argument("--out", default="schemas",
                        help="the folder to write the schemas into (default: %(default)s)")
    export.add_argument("--module", action="append", default=[],
                        help="import this module and export the types it defines (repeatable;"
                        " default: [tool.flujo] modules of ./pyproject.toml)")
    export.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the folder is out of date")
    export.set_defaults(handler=_cmd_schema_export)
    check = schema_commands.add_parser(
        "check", help="compare the code's schemas with a committed folder; exit 1 if breaking")
    check.add_argument("--against", default="schemas", help="the committed schemas folder")
    check.add_argument("--mode", default="backward", choices=MODES,
                       help="which readers must keep working: backward (new code reads old"
                       " data), forward (old code reads new data), full (both); *-transitive"
                       " against every committed version, not only the last (default:"
                       " %(default)s)")
    check.add_argument("--format", default="text", choices=("text", "json"),
                       help="text for people, json for tools (default: %(default)s)")
    check.add_argument("--module", action="append", default=[], help=_MODULE_HELP)
    check.add_argument("-v", "--verbose", action="store_true", help="also list compatible changes")
    check.set_defaults(handler=_cmd_schema_check)
    docs = schema_commands.add_parser("docs", help="Markdown pages for every stored type")
    docs.add_argument("--out", default="docs/types",
                      help="the folder to write the pages into (default: %(default)s)")
    docs.add_argument("--schema-base", default="../schemas",
                      help="link prefix from the pages to the schemas folder")
    docs.add_argument("--html", help="also write one self-contained HTML page here")
    docs.add_argument("--module", action="append", default=[], help=_MODULE_HELP)
    docs.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 if the pages are out of date")
    docs.set_defaults(handler=_cmd_schema_docs)
    add_state_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # psycopg_pool logs each failed connection attempt; the error a command ends with says
    # why it could not connect, once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    try:
        code: int = args.handler(args)
    except _UsageError as exc:
        print(f"flujo: {visible(str(exc))}", file=sys.stderr)
        return 2
    except FlujoError as exc:
        print(f"flujo: {type(exc).__name__}: {visible(str(exc))}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
