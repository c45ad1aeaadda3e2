"""`/metrics` in the Prometheus text format, built from the same in-memory status as the API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

STATES = ("starting", "running", "paused", "backoff", "stopping", "stopped", "failed", "disabled")
VERDICTS = ("healthy", "degraded", "down")


class WorkerCollector(Collector):
    def __init__(self, status: Callable[[], list[dict[str, Any]]]) -> None:
        self._status = status

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        rows = self._status()
        up = GaugeMetricFamily("worker_up", "1 when the worker process is running", labels=["worker"])
        healthy = GaugeMetricFamily("worker_healthy", "1 when Healdec judges the worker healthy", labels=["worker"])
        state = GaugeMetricFamily(
            "worker_state", "1 for the worker's current supervision state", labels=["worker", "state"]
        )
        restarts = CounterMetricFamily("worker_restarts", "Restarts since the manager booted", labels=["worker"])
        cycles = CounterMetricFamily("worker_cycles", "Work cycles completed (all time)", labels=["worker"])
        errors = GaugeMetricFamily(
            "worker_failed_cycles_last_hour", "Failed cycles in the last hour", labels=["worker"]
        )
        error_rate = GaugeMetricFamily(
            "worker_error_rate", "Failed items over attempted items, last hour", labels=["worker"]
        )
        cycle_error_rate = GaugeMetricFamily(
            "worker_cycle_error_rate", "Failed cycles over all cycles, last hour", labels=["worker"]
        )
        verdict = GaugeMetricFamily(
            "worker_verdict", "1 for Healdec's current verdict on the worker", labels=["worker", "verdict"]
        )
        cycle_ms = GaugeMetricFamily(
            "worker_cycle_ms", "Cycle duration over the last hour (last, p50, p95)", labels=["worker", "stat"]
        )
        speed = GaugeMetricFamily(
            "worker_items_per_second", "Items done per second spent in cycles, last hour", labels=["worker"]
        )
        lag = GaugeMetricFamily(
            "worker_lag", "How far behind its upstream the worker is, in its own unit", labels=["worker", "unit"]
        )
        items = CounterMetricFamily("worker_items_processed", "Items processed (all time)", labels=["worker"])
        rss = GaugeMetricFamily("worker_rss_bytes", "Resident memory of the worker process", labels=["worker"])
        cpu = GaugeMetricFamily("worker_cpu_percent", "CPU use of the worker process", labels=["worker"])
        for row in rows:
            name = row["name"]
            up.add_metric([name], 1.0 if row["pid"] else 0.0)
            healthy.add_metric([name], 1.0 if row["healthy"] else 0.0)
            for s in STATES:
                state.add_metric([name, s], 1.0 if row["state"] == s else 0.0)
            restarts.add_metric([name], row["restartCount"])
            cycles.add_metric([name], row["cycles"])
            errors.add_metric([name], row["failedCyclesLastHour"])
            error_rate.add_metric([name], row["errorRate"])
            cycle_error_rate.add_metric([name], row["cycleErrorRate"])
            for v in VERDICTS:
                verdict.add_metric([name, v], 1.0 if row["verdict"] == v else 0.0)
            for stat, value in row["cycleMs"].items():
                if value is not None:
                    cycle_ms.add_metric([name, stat], value)
            if row["itemsPerSecond"] is not None:
                speed.add_metric([name], row["itemsPerSecond"])
            if row["lag"] is not None:
                lag.add_metric([name, row["lagUnit"] or ""], row["lag"])
            items.add_metric([name], row["itemsProcessed"])
            if row["rssBytes"] is not None:
                rss.add_metric([name], row["rssBytes"])
            if row["cpuPercent"] is not None:
                cpu.add_metric([name], row["cpuPercent"])
        yield from (up, healthy, verdict, state, restarts, cycles, errors, error_rate, cycle_error_rate, items)
        yield from (rss, cpu, cycle_ms, speed, lag)


def build_registry(status: Callable[[], list[dict[str, Any]]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(status))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
