"""In-memory OpenTelemetry SDK providers for the telemetry tests, and helpers to read what they hold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pi_builder_middleware.telemetry.otel import OtelTelemetry


@dataclass
class Otel:
    """An SDK TracerProvider and MeterProvider recording in memory, and the OtelTelemetry reporting to them."""

    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)

    def __post_init__(self) -> None:
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = OtelTelemetry(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name or s.name.startswith(name)]

    def one(self, name: str) -> ReadableSpan:
        found = self.spans(name)
        assert len(found) == 1, [s.name for s in self.exporter.get_finished_spans()]
        return found[0]

    def attempt_spans(self) -> list[ReadableSpan]:
        from opentelemetry.trace import SpanKind

        return sorted(
            (s for s in self.spans() if s.kind is SpanKind.CLIENT and "pi_builder.attempt" in (s.attributes or {})),
            key=lambda s: s.attributes["pi_builder.attempt"],
        )  # type: ignore[index]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        out.extend(m.data.data_points)
        return out

    def value(self, metric: str, **attrs: Any) -> float:
        """Sum (counters), count (histograms) or value (gauges) of the points whose attributes include ``attrs``."""
        total = 0.0
        for p in self.points(metric):
            pattrs = dict(p.attributes)
            if all(pattrs.get(k.replace("__", ".")) == v for k, v in attrs.items()):
                total += p.count if hasattr(p, "count") else p.value
        return total


def events(span: ReadableSpan) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, dict(e.attributes or {})) for e in span.events]


def all_text(spans: list[ReadableSpan]) -> str:
    """Every attribute, event and status text of ``spans`` (to look for secrets)."""
    parts = []
    for s in spans:
        parts.append(s.name)
        parts.append(repr(dict(s.attributes or {})))
        parts.extend(repr((e.name, dict(e.attributes or {}))) for e in s.events)
        parts.append(str(s.status.description))
    return "\n".join(parts)


def chat(sim: Any, name: str) -> Any:
    """A real ChatOpenAI client of simulated provider ``name`` (no retries, usage in streams)."""
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=sim.base_url(name),
        api_key="sk-fake-key",  # type: ignore[arg-type]
        model="sim",
        max_retries=0,
        timeout=10,
        stream_usage=True,
    )
