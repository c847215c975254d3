"""The benchmark is not a timed test: this only proves it runs and the flujo rows are lossless."""

from __future__ import annotations

from pathlib import Path

import pytest

from flujo.bench import main, same
from flujo.bench._workloads import build


@pytest.mark.slow
def test_quick_benchmark_completes_losslessly(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    assert main(["--quick", "--backends", "memory,sqlite", "--steps", "sqlite,file",
                 "--savers", "sqlite", "--out", str(out)]) == 0
    report = out.read_text()
    for section in ("### small", "### medium", "### large", "### custom", "### backends",
                    "peak memory", "### checkpoint history", "| sqlite | 50 |",
                    "sqlite baseline (model_dump_json", "| file | 50 |",
                    "### against pydantic told the exact type", "| agents | 20 |",
                    "| events | 200 |", "| wide | 50 |", "| tree | 4 |", "| plain | 500 |",
                    "### scaling and memory (events)",
                    "Peak resident memory of one call",
                    "### saves and loads against LangGraph's checkpoint savers"):
        assert section in report
    # flujo's saver rows, on both states, load what was saved with its types; LangGraph's
    # savers (the bench extra, in dev) were measured beside them
    savers = [line.split(" | ") for line in report.splitlines() if line.startswith("| sqlite |")
              and ("LangGraph" in line or "flujo SQLiteBackend" in line)]
    assert [cells[2] for cells in savers if "flujo" in cells[2]] == \
        ["flujo SQLiteBackend (async)"] * 2
    assert all(cells[5].startswith("yes") for cells in savers if "flujo" in cells[2])
    assert sum("LangGraph" in cells[2] for cells in savers) == 4
    assert "| flujo safe_serialize + orjson |" in report
    # flujo keeps every type of every realistic workload (the row's 9th cell)
    realistic = [line.split(" | ") for line in report.splitlines()
                 if line.startswith(("| agents |", "| events |", "| wide |", "| tree |",
                                     "| plain |"))]
    assert len(realistic) == 5 and all(cells[8] == "yes" for cells in realistic)


def test_same_detects_a_changed_zone_fields_set_or_extra() -> None:
    from datetime import UTC, datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from pydantic_core import TzInfo

    paris = datetime(2026, 7, 1, 12, tzinfo=ZoneInfo("Europe/Paris"))
    assert same(paris, paris.replace())
    assert not same(paris, paris.astimezone(timezone(timedelta(hours=2))))  # same instant
    # pydantic's fixed offset comes back as datetime.timezone (docs/format.md)
    assert same(datetime(2026, 1, 1, tzinfo=TzInfo(0)), datetime(2026, 1, 1, tzinfo=UTC))
    from flujo.bench._realistic import Usage

    usage = Usage(prompt_tokens=1, completion_tokens=2)
    assert same(usage, usage.model_copy())
    assert not same(usage, Usage.model_construct(prompt_tokens=1, completion_tokens=2,
                                                 _fields_set={"prompt_tokens"}))


def test_same_detects_a_type_change() -> None:
    context = build("small")
    assert same(context, build("small"))
    changed = build("small")
    changed.scratchpad["labels"] = sorted(changed.scratchpad["labels"])
    assert not same(context, changed)
