"""``flujo state ...``: operators' tools for a state store given by URI.

``ls``, ``show``, ``history``, ``export``, ``import``, ``migrate``, ``resume``, ``cancel``,
``recover``, ``fork``, ``prune`` and ``delete`` work on any built-in backend (``sqlite:///state.db``,
``file:///dir``, ``postgresql://...``; see docs/cli.md).
Output is a rich table / pretty print when a person is watching (stdout is a terminal) and
plain tab-separated text when piped; progress bars go to stderr when it is a terminal. The
exit code says what went wrong (``EXIT_CODES``).

This module wires the commands into argparse; the work is done in ``_state_read`` (ls, show,
export), ``_state_write`` (import, migrate, delete), ``_state_control`` (resume, cancel),
``_state_history`` (history, fork, prune, show --at) and ``_state_recover`` (recover), on a
store opened by ``_store``, with output and exit codes from ``_output``. The names below
stay importable from here.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, get_args

from ..exceptions import FlujoError
from ..state import RunStatus
from ._modules import import_application_modules
from ._output import (
    EXIT_CODES,
    EXIT_CORRUPT,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    _discard_stdout,
    _err,
    _report_error,
    _UsageError,
    exit_code_for,
)
from ._state_control import _cancel, _resume
from ._state_history import _fork, _history, _prune, parse_age, show_options
from ._state_read import _export, _ls, _show
from ._state_recover import _recover
from ._state_write import _delete, _import, _migrate
from ._store import STORE_ENV, redact_uri

__all__ = [
    "EXIT_CODES",
    "EXIT_CORRUPT",
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "STORE_ENV",
    "add_state_commands",
    "exit_code_for",
    "redact_uri",
]

_STATUSES: tuple[str, ...] = get_args(RunStatus)


Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _handler(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap an async command: import modules, run it, turn errors into exit codes."""

    def run(args: argparse.Namespace) -> int:
        try:
            import_application_modules(args.module)
            return asyncio.run(command(args))
        except (FlujoError, _UsageError) as exc:
            _report_error(exc)
            return exit_code_for(exc)
        except KeyboardInterrupt:
            _err("interrupted")
            return 130
        except BrokenPipeError:  # `flujo state ls | head`: the reader is gone, stop quietly
            _discard_stdout()
            return 141

    run.__name__ = run.__qualname__ = f"state_{command.__name__.strip('_')}"
    return run


# -- the parser --------------------------------------------------------------------------------

_EPILOG = "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())

_DESCRIPTION = f"""\
Inspect and maintain a state store. The store is --store URI or ${STORE_ENV}:
  sqlite:///state.db  sqlite:////abs/state.db  file:///abs/dir  file://rel/dir
  postgresql://user@host/db  (--pg-schema, --table)
Records of encrypted stores need their keys: --key-env VAR, where VAR holds KEY_ID:BASE64
(repeatable; the first is the key new records are written with)."""


def _store_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("store options")
    group.add_argument("--store", metavar="URI", help=f"the state store (default: ${STORE_ENV})")
    group.add_argument("--module", action="append", default=[], metavar="NAME",
                       help="import this module first so its types are registered (repeatable;"
                            " default: [tool.flujo] modules in ./pyproject.toml)")
    group.add_argument("--table", metavar="NAME", help="table name (sqlite, postgresql)")
    group.add_argument("--pg-schema", metavar="NAME", help="PostgreSQL schema (default: public)")
    group.add_argument("--connect-timeout", type=float, metavar="SECONDS",
                       help="PostgreSQL connect timeout (default: 10)")
    group.add_argument("--compression", metavar="NAME",
                       help="compression of records written (import, migrate): none, zlib,"
                            " zstd, auto, or a compressor a --module registers")
    group.add_argument("--key-env", action="append", default=[], metavar="VAR",
                       help="environment variable holding KEY_ID:BASE64_KEY (repeatable)")
    group.add_argument("--accept-plaintext", action="store_true",
                       help="with --key-env: also read unencrypted records (to encrypt a store"
                            " with migrate)")
    group.add_argument("--store-name", metavar="NAME",
                       help="with --key-env: the name the store's records are encrypted for"
                            " (Encryption(store=...))")
    group.add_argument("--accept-unbound", action="store_true",
                       help="with --store-name: also read records encrypted before the store"
                            " had a name (to bind them with migrate)")
    return common


def add_state_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add the ``state`` command group (``ls``, ``show``, ``export``, ``import``, ``migrate``,
    ``resume``, ``cancel``, ``delete``) to a parser's subcommands. Each command sets
    ``handler``: a function of the parsed arguments returning the exit code."""
    common = _store_options()
    raw = argparse.RawDescriptionHelpFormatter
    state = subparsers.add_parser(
        "state", help="inspect, back up, move and migrate stored runs",
        description=_DESCRIPTION, epilog=_EPILOG, formatter_class=raw)
    commands = state.add_subparsers(dest="state_command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, command: Command) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[common], help=help_text,
                                     description=help_text, epilog=_EPILOG, formatter_class=raw)
        parser.set_defaults(handler=_handler(command))
        return parser

    ls = add("ls", "list runs, most recently updated first", _ls)
    ls.add_argument("--status", choices=_STATUSES, help="only runs in this status")
    ls.add_argument("--pipeline", metavar="NAME", help="only runs of this pipeline")
    ls.add_argument("--limit", type=_non_negative, default=50, help="at most N runs (default 50)")
    ls.add_argument("--all", dest="limit", action="store_const", const=None,
                    help="no limit")
    ls.add_argument("--offset", type=_non_negative, default=0, help="skip the first N runs")
    ls.add_argument("--format", choices=("auto", "table", "tsv", "json"), default="auto",
                    help="auto: a table on a terminal, tab-separated when piped")
    ls.add_argument("--no-header", action="store_true", help="tsv: no header line")

    show = add("show", "print a run's decoded state", _show)
    show.add_argument("run_id", metavar="RUN_ID", help="the run to show")
    mode = show.add_mutually_exclusive_group()
    mode.add_argument("--raw", action="store_true",
                      help="the stored envelope as JSON (nothing decoded or decrypted)")
    mode.add_argument("--json", action="store_true",
                      help="the state as plain JSON (types not kept; for people and jq)")
    show_options(show)

    history = add("history", "list a run's checkpoints (one per save), oldest first", _history)
    history.add_argument("run_id", metavar="RUN_ID", help="the run whose checkpoints to list")
    history.add_argument("--format", choices=("auto", "table", "tsv", "json"), default="auto",
                         help="auto: a table on a terminal, tab-separated when piped")
    history.add_argument("--no-header", action="store_true", help="tsv: no header line")

    fork = add("fork", "start a new run from a checkpoint of a run (its remaining steps run"
                       " when it is run by its id)", _fork)
    fork.add_argument("run_id", metavar="RUN_ID", help="the run to fork")
    at = fork.add_mutually_exclusive_group()
    at.add_argument("--at", metavar="STEP",
                    help="fork from the state right after this step (a name, or an index from"
                         " 0); default: the latest checkpoint")
    at.add_argument("--revision", type=int, metavar="N", help="fork from checkpoint N")
    fork.add_argument("--new-run-id", metavar="ID",
                      help="the new run's id (default: RUN_ID-fork-<random>)")

    prune = add("prune", "delete finished runs, or all but their last checkpoint; running and"
                         " paused runs are never touched", _prune)
    prune.add_argument("--older-than", type=parse_age, metavar="AGE",
                       help="only runs last saved longer ago than AGE (30d, 12h, 90m, 2w)")
    prune.add_argument("--keep-last", type=_non_negative, metavar="N",
                       help="keep the N most recently saved finished runs of each pipeline")
    prune.add_argument("--status", action="append", choices=("completed", "failed",
                                                              "cancelled"),
                       help="only runs with this status (repeatable; default: all three)")
    prune.add_argument("--history-only", action="store_true",
                       help="keep the runs, drop all their checkpoints but the last")
    prune.add_argument("--dry-run", action="store_true", help="report, remove nothing")
    prune.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    export = add("export", "write runs as JSON lines (one stored envelope per line)", _export)
    export.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="default: every run")
    export.add_argument("-o", "--out", metavar="FILE", help="default: stdout")
    export.add_argument("--status", choices=_STATUSES, help="only runs in this status")
    export.add_argument("--pipeline", metavar="NAME", help="only runs of this pipeline")
    export.add_argument("--skip-damaged", action="store_true",
                        help="export the other runs when a record is damaged")

    imp = add("import", "store runs from JSON lines written by export", _import)
    imp.add_argument("file", metavar="FILE", help="'-' for stdin")
    imp.add_argument("--overwrite", action="store_true", help="replace runs already stored")
    imp.add_argument("--dry-run", action="store_true", help="check the file, write nothing")

    migrate = add("migrate", "rewrite stored records to the current versions", _migrate)
    migrate.add_argument("--dry-run", action="store_true", help="report, write nothing")
    migrate.add_argument("--check", action="store_true",
                         help="like --dry-run; exit 1 if any run needs rewriting")

    resume = add("resume", "answer a paused run (validated against its input model)", _resume)
    resume.add_argument("run_id", metavar="RUN_ID", help="the paused run to resume")
    resume.add_argument("--input", required=True, metavar="FILE",
                        help="the answer as a JSON object ('-' for stdin)")

    cancel = add("cancel", "cancel a run (a running one stops at its next step)", _cancel)
    cancel.add_argument("run_id", metavar="RUN_ID", help="the run to cancel")

    recover = add("recover", "find running runs nobody executes (a worker died, a message"
                             " was lost) and send them to workers again", _recover)
    recover.add_argument("--older-than", type=parse_age, default=parse_age("5m"),
                         metavar="AGE", help="only runs nobody saved for AGE (default 5m)")
    recover.add_argument("--task", metavar="MODULE:NAME",
                         help="the application's FlujoTask (flujo.integrations.celery), which"
                              " resubmits them; its runner's store is used")
    recover.add_argument("--pipeline", metavar="NAME", type=_non_empty,
                         help="without --task: only runs of this pipeline")
    recover.add_argument("--limit", type=_positive, default=10_000,
                         help="at most N runs, oldest first (default 10000)")
    recover.add_argument("--dry-run", action="store_true", help="list them, resubmit nothing")
    recover.add_argument("--format", choices=("text", "json"), default="text",
                         help="text: RUN_ID, last saved, what was done, tab-separated; json:"
                              " one object per line")

    delete = add("delete", "delete runs", _delete)
    delete.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="the runs to delete")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1, got 0")
    return value


def _non_empty(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text
