"""Operating runs executed elsewhere: ``flujo state recover`` (running runs nobody
executes, listed from any store, resubmitted through the application's Celery task; eager
here, real workers in tests/reliability/test_celery_campaign.py) and ``flujo state ls
--status running`` (which worker holds each run)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from test_state_cli import EXIT_OK, EXIT_USAGE, Store, tsv

from flujo import Flujo, Step


class _Check(BaseModel):
    ok: bool


def _runner(backend: Any) -> Flujo[Any]:
    return Flujo(Step.from_callable(lambda x: f"{x}!", name="shout")
                 >> Step.human("check", input_model=_Check) >> Step.from_callable(str),
                 state_backend=backend, pipeline_name="recovering")


def _prepare(store: Store) -> tuple[str, str, str]:
    """A run saved but never executed, a paused run, a run a worker holds."""
    async def go() -> tuple[str, str, str]:
        backend = store.open()
        async with backend:
            runner = _runner(backend)
            waiting = await runner.create_run_async("a", run_id=f"w-{uuid.uuid4().hex[:6]}")
            paused = (await runner.run_async("b")).run_id
            held = await runner.create_run_async("c", run_id=f"h-{uuid.uuid4().hex[:6]}")
            return waiting, paused, held
    return asyncio.run(go())


def test_dry_run_lists_the_running_runs_nobody_holds(store: Store, cli: Any) -> None:
    waiting, paused, held = _prepare(store)
    result = cli("recover", "--dry-run", "--older-than", "0s", store=store)
    assert result.code == EXIT_OK, result.err
    assert sorted(row[0] for row in tsv(result.out)) == sorted([waiting, held])
    assert {row[2] for row in tsv(result.out)} == {"unattended"}
    assert paused not in result.out

    async def while_held() -> Any:
        backend = store.open()
        async with backend, backend.claim(held):
            return await asyncio.to_thread(
                cli, "recover", "--dry-run", "--older-than", "0s", "--format", "json",
                store=store)
    listed = asyncio.run(while_held())
    assert [json.loads(line)["run_id"] for line in listed.out.splitlines()] == [waiting]
    assert cli("recover", "--dry-run", "--older-than", "1h", store=store).out == ""
    other = cli("recover", "--dry-run", "--older-than", "0s", "--pipeline", "other",
                store=store)
    assert other.out == ""


def test_without_a_task_only_a_dry_run_is_possible(store: Store, cli: Any) -> None:
    _prepare(store)
    result = cli("recover", "--older-than", "0s", store=store)
    assert result.code == EXIT_USAGE
    assert "--task MODULE:NAME" in result.err and "--dry-run" in result.err


APP = '''
from celery import Celery
from pydantic import BaseModel
from flujo import Flujo, Step
from flujo.integrations.celery import flujo_task

app = Celery("recovering_app", set_as_current=False)
app.conf.task_always_eager = True
runner = Flujo(Step.from_callable(lambda x: f"{{x}}!", name="shout"),
               state_backend={uri!r}, pipeline_name="recovering")
orders = flujo_task(app, runner)
not_a_task = 42
'''


@pytest.fixture
def app_module(tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    pytest.importorskip("celery")
    uri = f"sqlite:///{tmp_path / 'app.db'}"
    name = f"recovering_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP.format(uri=uri)))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, uri
    sys.modules.pop(name, None)


def test_recover_with_the_task_resubmits_and_the_runs_complete(
        app_module: tuple[str, str], cli: Any) -> None:
    name, _ = app_module
    module = __import__(name)
    lost = module.runner.create_run("lost")
    done = cli("recover", "--task", f"{name}:orders", "--older-than", "0s")
    assert done.code == EXIT_OK, done.err
    assert tsv(done.out)[0][0] == lost and tsv(done.out)[0][2] == "resubmitted"
    state = module.runner.state_at(lost)
    assert (state.status, state.last_step_output) == ("completed", "lost!")
    again = cli("recover", "--task", f"{name}:orders", "--older-than", "0s")
    assert again.code == EXIT_OK and again.out == ""


def test_recover_refuses_what_is_not_a_task(app_module: tuple[str, str], cli: Any) -> None:
    name, uri = app_module
    for spec, says in ((f"{name}:not_a_task", "not a FlujoTask"),
                       (f"{name}:missing", "has no attribute"),
                       ("no_such_module_here:orders", "cannot import module"),
                       (name, "MODULE:NAME")):
        refused = cli("recover", "--task", spec)
        assert refused.code == EXIT_USAGE and says in refused.err, (spec, refused.err)
    both = cli("recover", "--task", f"{name}:orders", "--store", uri)
    assert both.code == EXIT_USAGE and "leave out --store" in both.err


def test_ls_running_shows_which_worker_holds_each_run_and_since_when(
        store: Store, cli: Any) -> None:
    waiting, _, held = _prepare(store)

    async def while_held() -> tuple[Any, Any]:
        backend = store.open()
        async with backend, backend.claim(held):
            table = await asyncio.to_thread(cli, "ls", "--status", "running", store=store)
            lines = await asyncio.to_thread(cli, "ls", "--status", "running", "--format",
                                            "json", store=store)
            return table, lines

    table, lines = asyncio.run(while_held())
    assert table.code == EXIT_OK, table.err
    rows = tsv(table.out)
    assert rows[0][-2:] == ["HELD_BY", "HELD_SINCE"]
    by_id = {row[0]: row for row in rows[1:]}
    assert by_id[waiting][-2:] == ["-", "-"]
    host, pid, _ = by_id[held][-2].split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert datetime.fromisoformat(by_id[held][-1]).tzinfo is not None
    claims = {d["run_id"]: d["claim"] for d in map(json.loads, lines.out.splitlines())}
    assert claims[waiting] is None and claims[held]["holder"] == by_id[held][-2]
    assert "HELD_BY" not in cli("ls", store=store).out  # only for running runs


def test_recover_finds_the_task_module_in_the_current_directory(
        tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("celery")
    name = f"cwd_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP.format(
        uri=f"sqlite:///{tmp_path / 'cwd.db'}")))
    (tmp_path / f"{name}_exits.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        done = cli("recover", "--task", f"{name}:orders", "--dry-run")
        assert done.code == EXIT_OK, done.err
        exits = cli("recover", "--task", f"{name}_exits:orders", "--dry-run")
        assert exits.code == EXIT_USAGE and "SystemExit" in exits.err
        missing = cli("recover", "--task", f"{name}:orders.nope", "--dry-run")
        assert missing.code == EXIT_USAGE and "has no attribute 'orders.nope'" in missing.err
        dotted = cli("recover", "--task", f"{name}:app.tasks", "--dry-run")
        assert dotted.code == EXIT_USAGE and "not a FlujoTask" in dotted.err
    finally:
        for module in (name, f"{name}_exits"):
            sys.modules.pop(module, None)


def test_recover_refuses_an_empty_pipeline_name(store: Store, cli: Any) -> None:
    with pytest.raises(SystemExit):
        cli("recover", "--dry-run", "--pipeline", "", store=store)
