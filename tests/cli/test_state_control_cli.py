"""``flujo state resume`` / ``cancel`` and ``ls --status paused``, on SQLite, file and PostgreSQL
stores, in this process and from a fresh one."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from test_state_cli import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, Store, tsv

import flujo
from flujo import Flujo, PipelineContext, Step
from flujo.serialization import register_type


class Shipment(BaseModel):
    approved: bool
    carrier: str


register_type(Shipment, name="tests.cli.shipment")


def runner_for(store: Store) -> tuple[Flujo[PipelineContext], Any]:
    backend = store.open()
    pipeline = (Step.from_callable(lambda order: f"pack {order}", name="pack")
                >> Step.human("approve", input_model=Shipment, prompt="Ship it?")
                >> Step.from_callable(lambda s: f"{s.carrier}: {s.approved}", name="ship"))
    return Flujo(pipeline, state_backend=backend, pipeline_name="shipping"), backend


def run(store: Store, rid: str, **kwargs: Any) -> Any:
    async def go() -> Any:
        runner, backend = runner_for(store)
        async with backend:
            return await runner.run_async("o-1", run_id=rid, **kwargs)

    return asyncio.run(go())


def test_ls_paused_shows_what_each_run_waits_for(store: Store, cli: Any) -> None:
    rid = f"p-{uuid.uuid4().hex[:8]}"
    assert run(store, rid).status == "paused"
    result = cli("ls", "--status", "paused", store=store)
    assert result.code == EXIT_OK, result.err
    rows = tsv(result.out)
    assert rows[0][-1] == "WAITING_FOR"
    assert rows[1][0] == rid and rows[1][-1] == "Ship it? [tests.cli.shipment]"
    [line] = cli("ls", "--format", "json", store=store).out.splitlines()
    assert json.loads(line)["pause"] == {"step": "approve", "message": "Ship it?",
                                         "input_type": "tests.cli.shipment"}
    assert "Ship it?" in cli("ls", "--status", "paused", "--format", "table", store=store).out
    shown = cli("show", rid, store=store)
    assert "waiting for:\tShip it? [tests.cli.shipment] (version 1" in shown.out, shown.err


def test_resume_records_a_valid_answer_and_refuses_an_invalid_one(
        store: Store, cli: Any, tmp_path: Path) -> None:
    rid = f"r-{uuid.uuid4().hex[:8]}"
    run(store, rid)
    bad = tmp_path / "bad.json"
    bad.write_text('{"approved": "maybe"}')
    refused = cli("resume", rid, "--input", str(bad), store=store)
    assert refused.code == EXIT_USAGE
    assert "approved" in refused.err and "carrier" in refused.err and "stays paused" in refused.err
    assert store.record(rid).state.status == "paused"  # type: ignore[union-attr]

    good = tmp_path / "good.json"
    good.write_text('{"approved": true, "carrier": "DHL"}')
    done = cli("resume", rid, "--input", str(good), store=store)
    assert done.code == EXIT_OK, done.err
    assert "goes on with step 'ship'" in done.out
    record = store.record(rid)
    assert record is not None and record.state.status == "running"
    assert type(record.state.last_step_output) is Shipment
    again = cli("resume", rid, "--input", str(good), store=store)  # nothing awaits it now
    assert again.code == EXIT_ERROR and "not paused" in again.err
    result = run(store, rid)
    assert result.success and result.output == "DHL: True"
    assert [s.name for s in result.step_history] == ["pack", "approve", "ship"]


def test_resume_reads_stdin_and_names_missing_runs(store: Store, cli: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rid = f"s-{uuid.uuid4().hex[:8]}"
    run(store, rid)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(
        b'{"approved": false, "carrier": "UPS"}')))
    assert cli("resume", rid, "--input", "-", store=store).code == EXIT_OK
    assert run(store, rid).output == "UPS: False"
    missing = cli("resume", "nope", "--input", "-", store=store)
    assert missing.code == EXIT_NOT_FOUND


def test_cancel_stops_a_run_until_it_is_resumed_with_resume_cancelled(store: Store,
                                                                        cli: Any) -> None:
    rid = f"c-{uuid.uuid4().hex[:8]}"
    run(store, rid)
    result = cli("cancel", rid, store=store)
    assert (result.code, result.out.strip()) == (EXIT_OK, f"cancelled: run {rid}")
    cancelled = store.record(rid)
    assert cancelled is not None and cancelled.state.status == "cancelled"
    assert cancelled.state.pause is None  # a cancelled run waits for nothing
    assert run(store, rid).status == "cancelled"  # not resumed unless asked
    assert run(store, rid, resume_cancelled=True).status == "paused"
    assert cli("cancel", "nope", store=store).code == EXIT_NOT_FOUND


APP = '''
from pydantic import BaseModel
from flujo import Flujo, Step
from flujo.serialization import register_type


class Approval(BaseModel):
    approved: bool
    reviewer: str


register_type(Approval, name="app.approval")


def build(uri):
    pipeline = (Step.from_callable(lambda x: Approval(approved=False, reviewer=x),
                                   name="start")
                >> Step.human("approve", input_model=Approval, prompt="Approve?")
                >> Step.from_callable(lambda a: a.reviewer, name="done"))
    return Flujo(pipeline, state_backend=uri, pipeline_name="app")
'''


def test_resume_from_a_fresh_process_knows_the_model_through_module(tmp_path: Path) -> None:
    (tmp_path / "hitl_app.py").write_text(textwrap.dedent(APP))
    spec = importlib.util.spec_from_file_location("hitl_app", tmp_path / "hitl_app.py")
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    sys.modules["hitl_app"] = app
    spec.loader.exec_module(app)
    uri = f"sqlite:///{tmp_path / 'state.db'}"
    assert app.build(uri).run("x", run_id="fresh").status == "paused"
    answer = tmp_path / "answer.json"
    answer.write_text('{"approved": true, "reviewer": "eve"}')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), str(Path(flujo.__file__).resolve().parent.parent)])}
    command = [sys.executable, "-m", "flujo.cli", "state", "resume", "fresh", "--input",
               str(answer), "--store", uri]
    unknown = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                             cwd=tmp_path, check=False)
    assert unknown.returncode != 0 and "app.approval" in unknown.stderr  # without --module
    done = subprocess.run([*command, "--module", "hitl_app"], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    result = app.build(uri).run(run_id="fresh")
    assert result.success and result.output == "eve"
    # cancel needs no --module: it decodes none of the run's values (an app.approval here)
    assert app.build(uri).run("y", run_id="other").status == "paused"
    cancel = [sys.executable, "-m", "flujo.cli", "state", "cancel", "other", "--store", uri]
    cancelled = subprocess.run(cancel, env=env, capture_output=True, text=True, timeout=120,
                               cwd=tmp_path, check=False)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == "cancelled: run other"
    again = app.build(uri).run(run_id="other", resume_cancelled=True)
    assert again.status == "paused" and type(again.step_history[0].output) is app.Approval
    del sys.modules["hitl_app"]
