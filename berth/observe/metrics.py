"""/metrics in the Prometheus text format (prometheus-client renders it).

The per-request series (requests, latency, bytes, denials) are plain dicts bumped in the event loop
and turned into metric families only when scraped: prometheus-client's own Counter/Histogram take a
lock per increment and walk the buckets in Python, several microseconds on the manifest GET path.

Several processes (`--workers N`): granian forks N workers and a scrape reaches any one of them. serve
gives them a directory (BERTH_METRICS_DIR, under the data dir, emptied at start); each worker writes a
snapshot of its series there at most every SNAPSHOT_EVERY seconds (from the request path, one small
file write), and the worker that answers a scrape adds its live series to the others' snapshots. So a
scrape is at most SNAPSHOT_EVERY seconds behind for the other workers. Gauges read from the database
(uploads open, blobs stored, job queues) are asked at scrape time.
"""

from __future__ import annotations

import bisect
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

DIR_ENV = "BERTH_METRICS_DIR"  # set by serve for its workers only; not a setting
SNAPSHOT_EVERY = 5.0
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Sources:
    """What the scrape asks the database, as plain async callables (app.py wires them)."""

    store_counts: Callable[[], Awaitable[Any]]  # -> berth.db.observe.StoreCounts
    job_stats: Callable[[], Awaitable[list[Any]]]  # -> [berth.db.jobs.KindStats]


class Series:
    """One process's request series: plain numbers, keyed by their label values."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, str], int] = {}  # face, route, method, status
        self.latency: dict[tuple[str, str], list[float]] = {}  # face, route -> bucket counts..., count, sum
        self.bytes_in: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}
        self.denials: dict[tuple[str, str], int] = {}  # face, action

    def to_json(self) -> str:
        return json.dumps({k: [[list(key) if isinstance(key, tuple) else [key], v] for key, v in d.items()]
                           for k, d in vars(self).items()})

    def add(self, raw: str) -> None:
        """Add another process's snapshot (to_json) to these numbers."""
        for name, rows in json.loads(raw).items():
            d = getattr(self, name)
            for key, value in rows:
                k = key[0] if name in ("bytes_in", "bytes_out") else tuple(key)
                if isinstance(value, list):
                    mine = d.setdefault(k, [0.0] * len(value))
                    for i, v in enumerate(value):
                        mine[i] += v
                else:
                    d[k] = d.get(k, 0) + value

    def copy(self) -> Series:
        out = Series()
        out.add(self.to_json())
        return out


class Metrics:
    def __init__(self, directory: str | None = None) -> None:
        self.series = Series()
        self.dir = Path(directory) if directory else (Path(os.environ[DIR_ENV]) if os.environ.get(DIR_ENV) else None)
        self._next_snapshot = 0.0
        self._sources: Sources | None = None

    def request(self, face: str, route: str, method: str, status: int, seconds: float, bytes_in: int,
                bytes_out: int, denied: str | None) -> None:
        s = self.series
        key = (face, route, method, str(status))
        s.requests[key] = s.requests.get(key, 0) + 1
        hist = s.latency.get((face, route))
        if hist is None:
            hist = s.latency[(face, route)] = [0.0] * (len(BUCKETS) + 3)  # buckets, +Inf, count, sum
        hist[bisect.bisect_left(BUCKETS, seconds)] += 1
        hist[-2] += 1
        hist[-1] += seconds
        if bytes_in:
            s.bytes_in[face] = s.bytes_in.get(face, 0) + bytes_in
        if bytes_out:
            s.bytes_out[face] = s.bytes_out.get(face, 0) + bytes_out
        if denied:
            s.denials[(face, denied)] = s.denials.get((face, denied), 0) + 1
        if self.dir is not None:
            now = time.monotonic()
            if now >= self._next_snapshot:
                self._next_snapshot = now + SNAPSHOT_EVERY
                self.snapshot()

    def snapshot(self) -> None:
        """This worker's series, for the worker that answers the next scrape (atomic: written, then renamed)."""
        assert self.dir is not None
        tmp = self.dir / f".{os.getpid()}.tmp"
        try:
            tmp.write_text(self.series.to_json())
            os.replace(tmp, self.dir / f"{os.getpid()}.json")
        except OSError:  # a full disk: the next snapshot catches up
            tmp.unlink(missing_ok=True)

    def _all_series(self) -> Series:
        if self.dir is None:
            return self.series
        total = self.series.copy()
        for f in self.dir.glob("*.json"):
            if f.stem != str(os.getpid()):
                try:
                    total.add(f.read_text())
                except (OSError, ValueError):  # a worker mid-restart: its next snapshot counts
                    continue
        return total

    async def render(self, sources: Sources | None) -> tuple[bytes, str]:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(self._all_series(), await _gauges(sources)))
        return generate_latest(registry), CONTENT_TYPE_LATEST


async def _gauges(sources: Sources | None) -> list[GaugeMetricFamily]:
    if sources is None:
        return []
    counts = await sources.store_counts()
    out = [GaugeMetricFamily("berth_upload_sessions_open", "Upload sessions begun and not ended",
                             value=counts.uploads_open),
           GaugeMetricFamily("berth_blobs_stored", "Blobs stored (each once, whatever the repositories)",
                             value=counts.blobs),
           GaugeMetricFamily("berth_blob_bytes_stored", "Bytes of the blobs stored", value=counts.blob_bytes)]
    jobs = GaugeMetricFamily("berth_jobs", "Jobs in the queue, by kind and state", labels=["kind", "state"])
    oldest = GaugeMetricFamily("berth_job_oldest_queued_age_seconds", "Age of the oldest queued job, by kind "
                               "(0: none queued)", labels=["kind"])
    now = time.time()
    for ks in await sources.job_stats():
        for state, n in sorted(ks.counts.items()):
            jobs.add_metric([ks.kind, state], n)
        oldest.add_metric([ks.kind], 0 if ks.oldest_queued is None else max(now - ks.oldest_queued, 0.0))
    return [*out, jobs, oldest]


class _Families(Collector):
    def __init__(self, s: Series, gauges: list[GaugeMetricFamily]) -> None:
        self.s = s
        self.gauges = gauges

    def collect(self) -> Iterable[Any]:
        s = self.s
        requests = CounterMetricFamily("berth_requests", "HTTP requests answered, by face, route or ECR/IAM "
                                       "operation, method and status", labels=["face", "route", "method", "status"])
        for key, n in sorted(s.requests.items()):
            requests.add_metric(list(key), n)
        latency = HistogramMetricFamily("berth_request_duration_seconds", "Time to answer a request, by face and "
                                        "route", labels=["face", "route"])
        for (face, route), h in sorted(s.latency.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip([*(str(b) for b in BUCKETS), "+Inf"], h[:-2], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric([face, route], buckets, h[-1])
        received = CounterMetricFamily("berth_request_bytes", "Request body bytes received, by face", labels=["face"])
        for face, n in sorted(s.bytes_in.items()):
            received.add_metric([face], n)
        sent = CounterMetricFamily("berth_response_bytes", "Response body bytes sent, by face", labels=["face"])
        for face, n in sorted(s.bytes_out.items()):
            sent.add_metric([face], n)
        denials = CounterMetricFamily("berth_authorization_denials", "Requests refused by authorization, by face "
                                      "and denied action", labels=["face", "action"])
        for (face, action), n in sorted(s.denials.items()):
            denials.add_metric([face, action], n)
        yield from (requests, latency, received, sent, denials, *self.gauges)


def prepare_directory(directory: Path) -> None:
    """Called by `serve` before the workers fork: an empty directory for their snapshots."""
    import shutil

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True)
    os.environ[DIR_ENV] = str(directory)
