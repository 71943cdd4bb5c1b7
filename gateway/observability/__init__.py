"""Running facegate as a service: metrics, traces, logs and readiness.

    metrics.py   every facegate_* Prometheus series, bounded labels, the /metrics page
    tracing.py   OpenTelemetry, switched on by OTEL_*; the forward's CLIENT span
    requests.py  one vendor request observed: span, steps, metrics, one JSON log line
    logs.py      JSON log lines through the standard library; the start-up summary
    health.py    readiness checks (database, Redis, policy, log key)

Nothing here decides anything: a failure to observe never refuses a request, and what is
observed is read from what the pipeline already does (its steps, its audit records).
"""
