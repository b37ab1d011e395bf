"""Prometheus metrics for Lamplighter itself."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "lamplighter_http_requests_total",
    "HTTP requests by route template",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "lamplighter_http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
JOB_FAILURES = Counter("lamplighter_job_failures_total", "Job attempts that raised", ["kind"])
JOBS_PROCESSED = Counter(
    "lamplighter_jobs_processed_total", "Jobs finished by outcome", ["kind", "outcome"]
)
