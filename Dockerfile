# syntax=docker/dockerfile:1
# async-amp: `docker build -t async-amp .` then `docker run --rm async-amp extract --help`.
# Settings come from environment variables (ASYNC_AMP_<SECTION>_<KEY>) or a config.toml mounted
# at /app/config.toml; keys from AMP_API_KEY / AMP_SECRET_KEY (never baked into the image).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the package and its pinned dependencies into a virtualenv -----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/async-amp
# constraints.txt pins every dependency to the versions CI tests (dev tools in it are not installed).
COPY pyproject.toml constraints.txt README.md ./
COPY async_amp ./async_amp
RUN /opt/async-amp/bin/pip install --constraint constraints.txt . \
    && /opt/async-amp/bin/async-amp --version

# --- runtime: the virtualenv and nothing else, run as an unprivileged user ---------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="async-amp" \
      org.opencontainers.image.description="Amplitude Export API to a local folder, Azure Blob Storage, S3 or GCS, as NDJSON, gzip, Parquet or Delta Lake"
ENV PATH=/opt/async-amp/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 async-amp \
    && useradd --system --uid 10001 --gid async-amp --home-dir /app --shell /usr/sbin/nologin async-amp \
    && install -d -o async-amp -g async-amp -m 0755 /app /app/data /app/logs
COPY --from=build /opt/async-amp /opt/async-amp
WORKDIR /app
USER 10001:10001
# Local output (the default sink) goes to /app/data and per-run JSON logs to /app/logs: mount
# volumes there to keep them (e.g. docker run -v "$PWD/data:/app/data" ...).
ENTRYPOINT ["async-amp"]
CMD ["--help"]
