FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DESK_DATABASE_URL=sqlite:///data/appeal-desk.db \
    DESK_HTTP__HOST=0.0.0.0 \
    DESK_HTTP__PORT=8080

WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY channels ./channels
COPY router ./router
COPY bots ./bots
COPY desk ./desk
COPY templates ./templates
RUN pip install . \
 && useradd --system --create-home --uid 10001 desk \
 && mkdir -p /data \
 && chown desk /data

USER desk
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"
ENTRYPOINT ["appeal-desk"]
CMD ["serve"]
