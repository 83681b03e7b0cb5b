# esupervision workers (esup worker), the HTTP ingest (esup publish --serve) and every other esup command.
#
#   docker build -t esupervision .
#   docker run --rm esupervision worker --show-topics
#
# The source stays in /app and is installed in editable mode: rules/ and streams/ find the catalog,
# calendar overrides, thresholds and routing in /app/config, which docker-compose.yml mounts from the
# repository so that operators edit data files without rebuilding the image.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY esup ./esup
COPY schemas ./schemas
COPY rules ./rules
COPY streams ./streams
COPY alerting ./alerting
COPY warehouse ./warehouse
COPY reports ./reports
COPY dashboards ./dashboards
COPY simulator ./simulator
COPY config ./config

RUN pip install -e . \
 && useradd --system --uid 10001 --home-dir /var/lib/esup --create-home esup

USER esup
WORKDIR /var/lib/esup
# Faust's local files; /metrics for Prometheus; the HTTP ingest (esup publish --serve 0.0.0.0:8088).
ENV ESUP_DATA_DIR=/var/lib/esup/streams \
    ESUP_METRICS_PORT=9737
EXPOSE 9737 8088

ENTRYPOINT ["esup"]
CMD ["worker"]
