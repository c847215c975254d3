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
                 "--out", str(out)]) == 0
    report = out.read_text()
    for section in ("### small", "### medium", "### large", "### custom", "### backends",
                    "peak memory", "### checkpoint history", "| sqlite | 50 |",
                    "sqlite baseline (model_dump_json", "| file | 50 |"):
        assert section in report
    assert "| flujo safe_serialize + orjson |" in report


def test_same_detects_a_type_change() -> None:
    context = build("small")
    assert same(context, build("small"))
    changed = build("small")
    changed.scratchpad["labels"] = sorted(changed.scratchpad["labels"])
    assert not same(context, changed)
