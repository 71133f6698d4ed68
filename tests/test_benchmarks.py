"""The benchmark harness in quick mode: every row is produced and funcnet matches the reference.

Timings are not asserted (the machine is shared); the library's speed targets are reported in
docs/benchmarks.md by a full run (``python -m benchmarks.run``).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import correctness, run, suite  # noqa: E402


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick.md"
    results = run.main(["--quick", "--out", str(out)])  # in-process: never re-executes, env untouched
    return results, out


def _keys(section):
    return {row["key"] for row in section["rows"]} | set(section["skipped"])


def test_every_row_is_there(quick):
    results, _ = quick
    assert _keys(results["small_step"]) == set(suite.SMALL_STEP)
    assert _keys(results["small_fit"]) == set(suite.SMALL_FIT)
    assert _keys(results["large_step"]) == set(suite.LARGE_STEP)
    assert {r["impl"] for r in results["memory"]["rows"]} == set(suite.QUICK.memory_impls)
    assert len(results["targets"]) == 5
    for section in ("small_step", "small_fit", "large_step"):
        for row in results[section]["rows"]:
            assert row["median_s"] > 0 and row["ratio"] > 0, (section, row)
    # what is installed here must have run, not been skipped
    ran = {row["key"] for row in results["small_step"]["rows"]}
    assert {"reference", "funcnet-numpy"} <= ran
    if _installed("jax") and _installed("optax"):
        assert {"funcnet-jax", "stax-optax"} <= ran
    if _installed("torch"):
        assert "torch" in ran


def test_funcnet_matches_the_reference_in_float64(quick):
    results, _ = quick
    c = results["correctness"]
    assert c["ok"], c
    for label in ("default_loss", "book_loss"):
        assert c[label]["final_loss_diff"] <= correctness.TOLERANCE
        assert c[label]["max_param_diff"] <= correctness.TOLERANCE
    assert c["book_loss"]["max_curve_diff"] <= 1e-12  # the same formula: round-off only


def test_fits_reach_the_same_loss_from_the_same_start(quick):
    results, _ = quick
    losses = {row["key"]: row["final_loss"] for row in results["small_fit"]["rows"]}
    if "funcnet-jax" in losses:  # the same batches, the same step: only float32 round-off apart
        assert losses["funcnet-jax"] == pytest.approx(losses["funcnet-numpy"], abs=1e-4)


def test_report_is_written_where_asked(quick):
    _, out = quick
    text = out.read_text()
    for heading in ("## Targets", "## Small: one training step", "## Small: training end to end",
                    "## Large: one training step", "## Large: peak memory", "## Correctness",
                    "## Profile of the small step"):
        assert heading in text
    assert "python -m benchmarks.run --quick" in text
    assert json.loads(out.with_suffix(".json").read_text())["mode"] == "quick"
