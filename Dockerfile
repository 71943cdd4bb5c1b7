# facegate gateway. Production forwards to real vendors listed in FACEGATE_VENDORS_FILE;
# the reference vendor package is copied only because it ships in the same distribution.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 facegate
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY refvendor ./refvendor
COPY migrations ./migrations
COPY policies ./policies
# Editable, so gateway.migrate finds migrations/ beside the package.
RUN pip install --no-cache-dir -e .

USER facegate
ENV FACEGATE_HOST=0.0.0.0 \
    FACEGATE_PORT=8080 \
    FACEGATE_POLICY_DIR=/app/policies \
    FACEGATE_DATABASE_URL=sqlite+aiosqlite:////home/facegate/facegate.db \
    FACEGATE_MASTER_KEY_FILE=/home/facegate/master.key \
    FACEGATE_LOG_KEY_FILE=/home/facegate/log.key
EXPOSE 8080
CMD ["facegate", "serve"]
