"""``flujo state history``, ``show --at``, ``fork`` and ``prune`` on SQLite, file and
PostgreSQL stores (no pipeline needed: steps are named by the names the run stored)."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import Field
from test_state_cli import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, Store, tsv

from flujo import Flujo, PipelineContext, Step
from flujo.application._pipeline import Pipeline
from flujo.cli import _output


class Ledger(PipelineContext):
    entries: list[Decimal] = Field(default_factory=list)


def _step(index: int) -> Step:
    def add(total: Decimal, *, context: Ledger) -> Decimal:
        context.entries.append(Decimal(index) / 4)
        return total + Decimal(index)

    return Step.from_callable(add, name=f"book{index}")


def finished_run(store: Store, rid: str, *, steps: int = 4) -> None:
    async def go() -> None:
        backend = store.open()
        async with backend:
            flow = Flujo(Pipeline([_step(i) for i in range(steps)]), context_model=Ledger,
                         state_backend=backend, pipeline_name="ledger")
            assert (await flow.run_async(Decimal(0), run_id=rid)).success

    asyncio.run(go())


def test_history_lists_every_checkpoint(store: Store, cli: Any) -> None:
    rid = f"l-{uuid.uuid4().hex[:8]}"
    finished_run(store, rid)
    result = cli("history", rid, store=store)
    assert result.code == EXIT_OK, result.err
    rows = tsv(result.out)
    assert rows[0] == ["REVISION", "DONE", "STEP", "ATTEMPT", "STATUS", "KIND", "BYTES",
                       "SAVED"]
    assert [r[:5] for r in rows[1:]] == [
        ["1", "0", "-", "-", "running"], ["2", "1", "book0", "1", "running"],
        ["3", "2", "book1", "1", "running"], ["4", "3", "book2", "1", "running"],
        ["5", "4", "book3", "1", "completed"]]
    assert {r[5] for r in rows[1:]} <= {"state", "delta"} and all(int(r[6]) > 0
                                                                   for r in rows[1:])
    lines = cli("history", rid, "--format", "json", store=store).out.splitlines()
    assert json.loads(lines[2])["step"] == "book1"
    missing = cli("history", "nope", store=store)
    assert missing.code == EXIT_NOT_FOUND and "no run 'nope'" in missing.err


def test_show_at_a_step_or_a_revision(store: Store, cli: Any) -> None:
    rid = f"s-{uuid.uuid4().hex[:8]}"
    finished_run(store, rid)
    by_name = cli("show", rid, "--at", "book1", "--json", store=store)
    assert by_name.code == EXIT_OK, by_name.err
    state = json.loads(by_name.out)
    assert state["current_step_index"] == 2 and state["pipeline_context"]["entries"] == [
        "0", "0.25"]
    by_index = json.loads(cli("show", rid, "--at", "1", "--json", store=store).out)
    assert by_index == state
    pretty = cli("show", rid, "--revision", "2", store=store)
    assert "Decimal('0')" in pretty.out and "revision:\t2" in pretty.out
    raw = json.loads(cli("show", rid, "--revision", "3", "--raw", store=store).out)
    assert raw["revision"] == 3 and raw["steps_done"] == 2
    gone = cli("show", rid, "--at", "book9", store=store)
    assert gone.code != EXIT_OK and "no step 'book9'" in gone.err


def test_fork_then_run_the_rest(store: Store, cli: Any) -> None:
    rid = f"f-{uuid.uuid4().hex[:8]}"
    finished_run(store, rid)
    result = cli("fork", rid, "--at", "book1", "--new-run-id", f"{rid}-2", store=store)
    assert result.code == EXIT_OK, result.err
    assert tsv(result.out) == [["forked", rid, "3", f"{rid}-2"]]
    record = store.record(f"{rid}-2")
    assert record is not None and record.state.forked_from is not None
    assert (record.state.forked_from.run_id, record.state.forked_from.steps_done) == (rid, 2)
    assert record.state.pipeline_context["run_id"] == f"{rid}-2"
    again = cli("fork", rid, "--new-run-id", f"{rid}-2", store=store)
    assert again.code != EXIT_OK and "already exists" in again.err
    finished_run(store, f"{rid}-2")  # runs steps 2 and 3 only
    done = store.record(f"{rid}-2")
    assert done is not None and done.state.status == "completed"
    assert done.state.pipeline_context["entries"] == [Decimal(i) / 4 for i in range(4)]


def test_prune_dry_run_confirmation_and_summary(store: Store, cli: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    rid = f"p-{uuid.uuid4().hex[:8]}"
    finished_run(store, rid, steps=2)
    store.save(*[])  # the store exists for every kind
    usage = cli("prune", store=store)
    assert usage.code == EXIT_USAGE and "--older-than" in usage.err
    preview = cli("prune", "--keep-last", "0", "--history-only", "--dry-run", store=store)
    assert preview.code == EXIT_OK, preview.err
    assert ["would compact", rid] in tsv(preview.out) and "would remove" in preview.err
    monkeypatch.setattr(_output, "_is_tty", lambda stream: False)
    refused = cli("prune", "--keep-last", "0", "--history-only", store=store)
    assert refused.code == EXIT_USAGE and "--yes" in refused.err
    assert len(tsv(cli("history", rid, store=store).out)) == 4  # header + 3 checkpoints
    done = cli("prune", "--keep-last", "0", "--history-only", "--yes", store=store)
    assert done.code == EXIT_OK and ["compacted", rid] in tsv(done.out)
    assert "removed 2 record(s)" in done.err
    assert len(tsv(cli("history", rid, store=store).out)) == 2
    deleted = cli("prune", "--older-than", "0s", "--status", "completed", "--yes",
                  store=store)
    assert deleted.code == EXIT_OK and ["deleted", rid] in tsv(deleted.out)
    assert cli("history", rid, store=store).code == EXIT_NOT_FOUND
    with pytest.raises(SystemExit) as bad:  # argparse refuses it (exit 2, usage)
        cli("prune", "--older-than", "soon", store=store)
    assert bad.value.code == EXIT_USAGE


def test_a_step_named_with_digits_is_found_by_its_name(store: Store, cli: Any) -> None:
    # was: --at 0 was taken as index 0 even when a step is named "0"
    rid = f"d-{uuid.uuid4().hex[:8]}"

    async def go() -> None:
        backend = store.open()
        async with backend:
            steps = [Step.from_callable(lambda x, n=n: [*x, n], name=n) for n in ("1", "0")]
            flow = Flujo(Pipeline(steps), state_backend=backend, pipeline_name="digits")
            assert (await flow.run_async([], run_id=rid)).success

    asyncio.run(go())
    named = json.loads(cli("show", rid, "--at", "0", "--json", store=store).out)
    assert named["current_step_index"] == 2 and named["last_step_output"] == ["1", "0"]
    by_index = json.loads(cli("show", rid, "--at", "5", "--json", store=store).out
                          or "null")
    assert by_index is None  # neither a step named "5" nor index 5: refused


def test_raw_checkpoints_need_no_key_and_unknown_steps_are_usage_errors(
        tmp_path: Any, cli: Any) -> None:
    # was: show --raw --revision decoded the state first (exit 5 without the key), and an
    # unknown step exited 5
    import base64

    from flujo.state import Encryption

    key = bytes(range(32))
    uri = f"sqlite:///{tmp_path / 'secret.db'}"
    secret = Store("sqlite", uri, options={"encryption": Encryption.single(key, "k1")})
    finished_run(secret, "enc")
    plain = Store("sqlite", uri)
    raw = cli("show", "enc", "--revision", "2", "--raw", store=plain)
    assert raw.code == EXIT_OK, raw.err
    assert json.loads(raw.out)["revision"] == 2 and json.loads(raw.out)["codec"].endswith(
        "aesgcm")
    assert base64.b64decode(json.loads(raw.out)["payload"])  # untouched ciphertext
    by_index = cli("show", "enc", "--at", "1", "--raw", store=plain)  # names are encrypted
    assert by_index.code == EXIT_OK and json.loads(by_index.out)["steps_done"] == 2
    by_name = cli("show", "enc", "--at", "book1", "--raw", store=plain)
    assert by_name.code == EXIT_USAGE and "without its key" in by_name.err
