"""CI run of ``pi-builder bench --quick``: the report's structure and sane numbers (never the ranking).

One short run (a few seconds of traffic per contender against real HTTP servers on 127.0.0.1, real
LiteLLM Router, real LangChain runnables) shared by every test in this module.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from pi_builder_middleware.tools.chaos import QUICK_CONTENDERS
from pi_builder_middleware.tools.chaos.report import COLUMNS
from pi_builder_middleware.tools.cli import main

pytestmark = pytest.mark.timeout(240)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chaos") / "report"
    assert main(["bench", "--quick", "--scenario", "outage", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def data(report: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((report / "metrics.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def contenders(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (scenario,) = data["scenarios"]
    return {c["contender"]: c for c in scenario["contenders"]}


def test_every_quick_contender_ran(data, contenders):
    (scenario,) = data["scenarios"]
    assert scenario["skipped"] == {}
    assert list(contenders) == list(QUICK_CONTENDERS)
    assert data["quick"] is True
    assert data["machine"]["nproc"] >= 1 and data["machine"]["python"]


def test_report_table_has_a_row_per_contender_and_the_metric_columns(report):
    lines = (report / "report.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| contender | success"))
    assert [c.strip() for c in lines[header].strip("|").split("|")] == list(COLUMNS)
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    assert [r[0].strip("`") for r in rows] == list(QUICK_CONTENDERS)
    assert all(len(r) == len(COLUMNS) for r in rows)
    assert any(line.startswith("### Targets") for line in lines)


def _png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE and raw[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def test_plots_are_non_empty_pngs_linked_from_the_report(report):
    text = (report / "report.md").read_text()
    for kind in ("latency", "traffic", "success"):
        path = report / f"outage-{kind}.png"
        width, height = _png_size(path)
        assert width > 100 and height > 100
        assert path.stat().st_size > 2000
        assert f"({path.name})" in text


def test_numbers_are_sane(contenders):
    for name, c in contenders.items():
        assert 0.0 <= c["success_rate"] <= 1.0, name
        assert c["requests"] > 0 and 0 <= c["successes"] <= c["requests"], name
        assert 0 <= c["wasted_attempts"] <= c["attempts"], name
        assert 0 <= c["failed_attempts"] <= c["attempts"], name
        if c["successes"]:
            assert c["latency_p50_ms"] <= c["latency_p95_ms"] <= c["latency_p99_ms"], name
            assert c["cost"] > 0, name
        if c["ttft_p50_ms"] is not None:
            assert c["ttft_p50_ms"] <= c["ttft_p95_ms"] <= c["ttft_p99_ms"], name
        assert sum(sum(v) for v in c["attempts_by_provider"].values()) == c["attempts"], name
        assert sum(sum(v) for v in c["served_by_provider"].values()) == c["successes"], name
        for window in c["windows"]:
            assert window["detect_s"] is None or 0 <= window["detect_s"] <= window["end"] - window["start"]
            assert window["recover_s"] is None or window["recover_s"] >= 0


def test_the_oracle_never_sends_into_a_fault_window(contenders):
    oracle = contenders["oracle"]
    assert oracle["wasted_attempts"] == 0
    assert all(w["attempts"] == 0 for w in oracle["windows"])


def test_every_contender_reached_the_providers_over_http(contenders):
    for name, c in contenders.items():
        if name == "oracle":
            continue
        assert c["attempts"] >= c["successes"] > 0, name
        assert c["settings"], name  # the exact settings are in the JSON


def test_metrics_json_rebuilds_the_same_table(report):
    from pi_builder_middleware.tools.chaos.report import read_metrics, scenario_table

    rebuilt = read_metrics(report / "metrics.json")
    (scenario,) = rebuilt.scenarios
    assert [m.contender for m in scenario.metrics] == list(QUICK_CONTENDERS)
    assert scenario_table(scenario) in (report / "report.md").read_text()


NEW_SCENARIOS = ("outage-return", "single-blip", "capacity", "cold-start")


@pytest.fixture(scope="module")
def new_scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The newer scenarios in quick mode with the oracle alone (structure, not ranking)."""
    out = tmp_path_factory.mktemp("chaos-new") / "report"
    argv = ["bench", "--quick", "--contenders", "oracle", "--out", str(out)]
    for name in NEW_SCENARIOS:
        argv += ["--scenario", name]
    assert main(argv) == 0
    loaded: dict[str, Any] = json.loads((out / "metrics.json").read_text())
    loaded["report_md"] = (out / "report.md").read_text()
    return loaded


def test_new_scenarios_run_in_quick_mode_with_share_tables(new_scenarios):
    by_name = {s["scenario"]["name"]: s for s in new_scenarios["scenarios"]}
    assert list(by_name) == list(NEW_SCENARIOS)
    for name, entry in by_name.items():
        assert entry["skipped"] == {}, name
        assert f"### Traffic share ({name})" in new_scenarios["report_md"]
        (oracle,) = entry["contenders"]
        assert oracle["success_rate"] == 1.0 and oracle["wasted_attempts"] == 0, name


def test_outage_return_measures_the_oracles_return_to_share(new_scenarios):
    entry = next(s for s in new_scenarios["scenarios"] if s["scenario"]["name"] == "outage-return")
    (oracle,) = entry["contenders"]
    (window,) = oracle["windows"]
    # The oracle sends everything to alpha, except in the last oracle_lookahead_s before the outage.
    assert window["share_measured"] and window["baseline_share"] > 0.3
    assert window["share_return_s"] is not None and window["share_return_s"] < 0.2  # back at once
    assert oracle["share_return_mean_s"] == window["share_return_s"] and oracle["share_unreturned"] == 0


def test_capacity_oracle_stays_within_every_limit(new_scenarios):
    entry = next(s for s in new_scenarios["scenarios"] if s["scenario"]["name"] == "capacity")
    (oracle,) = entry["contenders"]
    assert oracle["failed_attempts"] == 0  # never a 429: it counts its own calls in flight
    used = [name for name, counts in oracle["attempts_by_provider"].items() if sum(counts)]
    assert len(used) >= 2  # the preferred provider alone cannot carry the load
