"""The Grafana dashboard in ``dashboards/``: every panel's query names series we export, with labels they carry."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prom_support import samples
from prometheus_client import CollectorRegistry, generate_latest

from pi_builder_middleware import FailoverConfig, Middleware, Provider, RouteRequest, Usage
from pi_builder_middleware.telemetry._hub import _hub
from pi_builder_middleware.telemetry.prometheus import SERIES, PrometheusMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "pi-builder.json"
SERIES_RE = re.compile(r"\bpi_builder_[a-z_]+")
BY_RE = re.compile(r"\bby \(([^)]*)\)")
SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def family(sample_name: str) -> str:
    for suffix in SUFFIXES:
        if sample_name.endswith(suffix) and sample_name.removesuffix(suffix) in SERIES:
            return sample_name.removesuffix(suffix)
    return sample_name


def exported() -> dict[str, set[str]]:
    """Sample name → label names, from a middleware that failed over, streamed and counted tokens."""
    registry = CollectorRegistry()
    mw = Middleware(
        [
            Provider(id="a", model="openai/x", group="g"),
            Provider(id="b", model="openai/y", group="g"),
            Provider(id="c", model="openai/z", group="g"),
        ],
        strategy="failover",
        failover=FailoverConfig(consecutive_failures=1, jitter=0.0),
        telemetry=False,
    )
    _hub(mw).add_sink(PrometheusMetrics(registry))

    class RateLimited(Exception):
        status_code = 429

    def limited(p: Provider) -> str:
        if p.id == "b":
            raise RateLimited("slow down")
        return "ok"

    def call(p: Provider) -> str:
        if p.id == "a":
            raise ConnectionError("down")
        return "ok"

    mw.execute(call, usage=lambda _: Usage(3, 4))  # a ejected, b answers
    mw.execute(limited)  # b cooling down, c answers
    mw.execute_open(call, RouteRequest(stream=True)).succeeded(ttft_s=0.05)
    return {
        name: set().union(*(set(labels) for labels, _ in rows))
        for name, rows in samples(generate_latest(registry).decode()).items()
    }


def test_every_panel_query_names_exported_series_and_groups_by_their_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    have = exported()
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = {p["title"] for p in panels}
    for needed in (
        "Traffic share per provider",
        "Breaker state timeline",
        "Error rate by kind",
        "Attempt latency p50 / p99",
        "Time to first chunk p50 / p99",
        "Failovers",
        "Requests saved by failover",
    ):
        assert needed in titles
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            names = set(SERIES_RE.findall(expr))
            assert names, f"{panel['title']}: {expr} names none of our series"
            for name in names:
                assert family(name) in SERIES and name in have, f"{panel['title']}: {name} is not exported"
                used.add(family(name))
            labels = set().union(*(have[n] for n in names)) | {"le"}
            grouped = {x.strip() for group in BY_RE.findall(expr) for x in group.split(",")}
            filtered = set(re.findall(r"(\w+)=~?\"", expr))
            missing = sorted((grouped | filtered) - labels)
            assert not missing, f"{panel['title']}: {missing} not on {names}"
    assert used == set(SERIES)  # every series has a panel
    variable = dashboard["templating"]["list"][1]["query"]["query"]
    assert SERIES_RE.search(variable) and "model_group" in variable
