"""Prometheus metrics, one registry per app. Counters are this process's; the fleet
gauges (nodes online, deployments and jobs by state) are read from the database at
scrape time, so they also cover what the worker process changed."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from cloud.models import Deployment, Job
from cloud.services import events, fleet


class Metrics:
    def __init__(self, db, settings):
        self.registry = CollectorRegistry()
        self.records = Counter("tinyfleet_ingest_records", "Ingested records by kind", ["kind"],
                               registry=self.registry)
        self.duplicates = Counter("tinyfleet_ingest_duplicates", "Telemetry records already stored",
                                  registry=self.registry)
        self.batches = Counter("tinyfleet_ingest_batches", "Ingest batches by outcome", ["outcome"],
                               registry=self.registry)
        self.latency = Histogram("tinyfleet_ingest_batch_seconds", "Time to validate and store one batch",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                                 registry=self.registry)
        self.registry.register(_FleetCollector(db, settings))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _FleetCollector:
    def __init__(self, db, settings):
        self.db, self.settings = db, settings

    def collect(self):
        with self.db.session() as s:
            online = fleet.online_count(s, events.now_ms(), self.settings.online_window_s)
            deps = dict(s.execute(select(Deployment.state, func.count()).group_by(Deployment.state)).all())
            jobs = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        g = GaugeMetricFamily("tinyfleet_nodes_online", "Nodes seen recently and not offline")
        g.add_metric([], online)
        yield g
        g = GaugeMetricFamily("tinyfleet_deployments", "Deployments by state", labels=["state"])
        for state in ("running", "paused", "succeeded", "aborted", "canceled"):
            g.add_metric([state], deps.get(state, 0))
        yield g
        g = GaugeMetricFamily("tinyfleet_jobs", "Retraining jobs by status", labels=["status"])
        for status in ("queued", "running", "succeeded", "rejected", "failed"):
            g.add_metric([status], jobs.get(status, 0))
        yield g
