# syntax=docker/dockerfile:1
# driftwatch: build a virtualenv in one stage, copy only it into a slim runtime image.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/driftwatch
COPY pyproject.toml README.md ./
COPY src ./src
# runtime dependencies (+ Parquet references, + confluent-kafka for kafka.library: confluent);
# no test or demo extras. confluent-kafka ships manylinux wheels with librdkafka inside.
RUN /opt/driftwatch/bin/pip install ".[parquet,fast]"

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="driftwatch" \
      org.opencontainers.image.description="Drift and model-monitoring daemon: Kafka in, Prometheus and retraining webhooks out" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 driftwatch \
 && useradd --system --uid 10001 --gid driftwatch --home-dir /var/lib/driftwatch --create-home driftwatch
COPY --from=build /opt/driftwatch /opt/driftwatch
COPY config/docker.yaml /etc/driftwatch/config.yaml
COPY config/demo-reference.csv /etc/driftwatch/demo-reference.csv
ENV PATH=/opt/driftwatch/bin:$PATH \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/driftwatch
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=2)"]
ENTRYPOINT ["driftwatch"]
CMD ["run", "--config", "/etc/driftwatch/config.yaml"]
