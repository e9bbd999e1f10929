# Appeal Desk: `docker build -t appeal-desk .`, then
#   docker run -p 8080:8080 -v appeal-desk-data:/data -e DESK_SECRET_KEY=… appeal-desk
# Embedded default: SQLite in the /data volume, local stream. With PostgreSQL and Redis see
# docker-compose.yml. Other commands: `docker run … appeal-desk migrate|worker|check-config|token`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY channels ./channels
COPY router ./router
COPY bots ./bots
COPY desk ./desk
COPY templates ./templates

# The package without its dev extras; then the build leftovers go, and an unprivileged user
# owns the data directory.
RUN pip install . \
 && rm -rf build ./*.egg-info \
 && useradd --system --create-home --home-dir /home/desk --uid 10001 --user-group desk \
 && mkdir -p /data \
 && chown desk:desk /data

ENV DESK_DATABASE_URL=sqlite:///data/appeal-desk.db \
    DESK_HTTP__HOST=0.0.0.0 \
    DESK_HTTP__PORT=8080

USER desk
VOLUME ["/data"]
EXPOSE 8080
# Liveness of `serve` (a `worker` container has no HTTP: compose disables this check for it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DESK_HTTP__PORT', '8080'), timeout=4)"]
ENTRYPOINT ["appeal-desk"]
CMD ["serve"]
