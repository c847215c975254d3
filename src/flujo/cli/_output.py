"""Output and errors of ``flujo state``: exit codes, error reports, plain or rich output.

Rich output (tables, pretty printing, progress bars) only when a person is watching the
stream and ``rich`` is installed; plain tab-separated text otherwise. ``rich`` is imported
only when it is used, so piped output works without it.

Everything printed that can come from a store (names, ids, messages, values) goes through
``_terminal``: text through ``visible`` (in ``_cell``, ``_err``,
``_rich_cell``), JSON through ``json_text``; rich output is built from
``Text`` objects, never from markup.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

from ..exceptions import (
    BackendConfigError,
    BackendUnavailableError,
    CorruptStateError,
    DeserializationError,
    EncryptionError,
    InvalidInputError,
    InvalidRunIdError,
    MigrationError,
    PipelineMismatchError,
    RunNotFoundError,
    UnknownTypeError,
)
from ._terminal import int_text, json_text, visible

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_CORRUPT = 4
EXIT_ERROR = 5

#: Exit code -> meaning (also printed by ``flujo state --help``).
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_NOT_FOUND: "run not found, or a check failed (migrate --check, import refused)",
    EXIT_USAGE: "usage error: bad arguments, bad store URI or option (BackendConfigError),"
    " a module that cannot be imported, an answer its pause refuses (InvalidInputError)",
    EXIT_UNAVAILABLE: "the store cannot be reached or opened (BackendUnavailableError)",
    EXIT_CORRUPT: "a stored or imported record is damaged (CorruptStateError, "
    "DeserializationError)",
    EXIT_ERROR: "any other flujo error: migration failure, missing key, conflict, ...",
}

_PROG = "flujo state"


class _UsageError(Exception):
    """A usage problem found after argument parsing (exit code 2).

    ``flujo schema`` reports it too (see ``_modules``), as ``flujo: MESSAGE``.
    """


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an error (see ``EXIT_CODES``)."""
    if isinstance(exc, _UsageError | InvalidRunIdError | BackendConfigError | InvalidInputError):
        return EXIT_USAGE
    if isinstance(exc, RunNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, BackendUnavailableError):
        return EXIT_UNAVAILABLE
    if isinstance(exc, MigrationError):  # readable data this code cannot bring up to date
        return EXIT_ERROR
    if isinstance(exc, CorruptStateError | DeserializationError):
        return EXIT_CORRUPT
    return EXIT_ERROR


def _hint(exc: BaseException) -> str:
    if isinstance(exc, UnknownTypeError | PipelineMismatchError):
        return ("import the application's types with --module NAME (or [tool.flujo] modules), "
                "or trust their modules ([tool.flujo] trusted_modules)")
    if isinstance(exc, EncryptionError):
        if "failed authentication" in str(exc):
            return ("a store with a name needs it: --store-name NAME (records encrypted before"
                    " it had one: --accept-unbound); else the record was changed or copied")
        return "pass the store's keys with --key-env VAR (see flujo state --help)"
    if isinstance(exc, CorruptStateError):
        return "the record was left exactly as it was found"
    return ""


# -- output ----------------------------------------------------------------------------------


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False


def confirmed(question: str) -> bool:
    """Ask ``question`` (already made visible) on the terminal; True only for y or yes. End
    of input (Ctrl-D) is a no, on a line of its own, not a traceback."""
    try:
        answer = input(question + " [y/N] ")
    except EOFError:
        print(file=sys.stderr)  # the shell's prompt goes on a line of its own
        return False
    return answer.strip().lower() in ("y", "yes")


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _use_rich(stream: IO[str]) -> bool:
    """Rich output when a person is watching ``stream`` and rich is installed."""
    return _is_tty(stream) and _rich_available()


def _err(message: str, *more: str) -> None:
    """Report on stderr: ``message`` after the program's name, then each of ``more`` on a
    line of its own; control characters in them are shown as escapes (they may be stored
    text, such as an error naming a stored value)."""
    print(f"{_PROG}: {visible(message)}", file=sys.stderr)
    for line in more:
        print(visible(line), file=sys.stderr)


def _report_error(exc: BaseException) -> None:
    name = "error" if isinstance(exc, _UsageError) else type(exc).__name__
    lines = [f"  {note}" for note in getattr(exc, "__notes__", ())]
    hint = _hint(exc)
    if hint:
        lines.append(f"  hint: {hint}")
    _err(f"{name}: {exc}", *lines)


def _cell(value: object) -> str:
    """One value as printable text: one line (tabs and line breaks are escaped too, so
    free text cannot break TSV columns), no control characters, integers of any size."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return int_text(value)
    return visible(str(value))


def _rich_cell(value: object, style: str = "") -> Any:
    """``_cell`` as a rich ``Text``: shown as it is, never read as markup."""
    from rich.text import Text

    return Text(_cell(value), style=style)


def _print_tsv(rows: Sequence[Sequence[object]], header: Sequence[str] | None) -> None:
    if header is not None:
        print("\t".join(header))
    for row in rows:
        print("\t".join(_cell(cell) for cell in row))


def _print_json(document: Any) -> None:
    text = json_text(document, indent=2)
    if _use_rich(sys.stdout):
        from rich.console import Console
        from rich.highlighter import JSONHighlighter
        from rich.text import Text

        colored = JSONHighlighter()(Text(text, no_wrap=True))  # as rich.json draws it
        Console(file=sys.stdout).print(colored, soft_wrap=True)
    else:
        print(text)


def _not_found(run_id: str) -> int:
    _err(f"no run {run_id!r} in the store")
    return EXIT_NOT_FOUND


class _Progress:
    """A progress bar on stderr when a person is watching it; silent otherwise. It counts
    runs, or with ``in_bytes`` bytes read, shown with their unit (``1.2/3.4 MB``)."""

    def __init__(self, label: str, total: int | None, *, in_bytes: bool = False) -> None:
        self.label = label
        self.total = total
        self.in_bytes = in_bytes
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if _use_rich(sys.stderr):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn() if self.in_bytes else MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def update(self, completed: int, total: int | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, total=total or self.total)

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, steps)

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
