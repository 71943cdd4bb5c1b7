# facegate gateway. Production forwards to real vendors listed in FACEGATE_VENDORS_FILE;
# the reference vendor package is copied only because it ships in the same distribution.
# compose.yaml runs two replicas of this image behind nginx, with PostgreSQL, Redis and OPA.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 facegate \
    && mkdir -p /var/lib/facegate/keys \
    && chown facegate:facegate /var/lib/facegate/keys \
    && chmod 0700 /var/lib/facegate/keys
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY refvendor ./refvendor
COPY migrations ./migrations
COPY policies ./policies
# Editable, so gateway.migrate finds migrations/ beside the package; otlp for traces.
RUN pip install --no-cache-dir -e '.[otlp]'

# Never root: the keys directory (a volume in compose.yaml) is the user's alone.
USER facegate
ENV FACEGATE_HOST=0.0.0.0 \
    FACEGATE_PORT=8080 \
    FACEGATE_POLICY_DIR=/app/policies \
    FACEGATE_DATABASE_URL=sqlite+aiosqlite:////home/facegate/facegate.db \
    FACEGATE_MASTER_KEY_FILE=/var/lib/facegate/keys/master.key \
    FACEGATE_LOG_KEY_FILE=/var/lib/facegate/keys/log.key
VOLUME ["/var/lib/facegate/keys"]
EXPOSE 8080
# Liveness: the process answers. (compose.yaml checks readiness instead, /facegate/ready.)
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/facegate/health' % os.environ.get('FACEGATE_PORT', '8080'), timeout=3)"]
# SIGTERM drains in-flight requests (FACEGATE_SHUTDOWN_GRACE_SECONDS) before the exit.
STOPSIGNAL SIGTERM
CMD ["facegate", "serve"]
