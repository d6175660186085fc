# The LeadVibe services in one image: the gateway (the default command), the scorer
# (`python -m scorer`), the trigger service (`python -m trigger_service`) and the `leadvibe`
# command. compose.yaml runs one process per container from it.
# BASE_IMAGE is any Debian bookworm, whose python3 is the 3.11 the project pins:
# debian:bookworm-slim where a registry answers, the leadvibe/debian:bookworm that
# docker/images.sh builds where none does. Dependencies come from PyPI (pinned in
# pyproject.toml); the classic builder needs `--network host` on machines whose containers
# have no network of their own during builds.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends python3 python3-venv ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    python3 -m venv /opt/leadvibe; \
    useradd --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin leadvibe
ENV PATH=/opt/leadvibe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The pinned dependencies in a layer of their own: a code change does not reinstall them.
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY README.md ./
COPY leadvibe ./leadvibe
COPY schemas ./schemas
COPY ingest_gateway ./ingest_gateway
COPY scorer ./scorer
COPY trigger_service ./trigger_service
RUN pip install --no-deps . && rm -rf /src

WORKDIR /
USER leadvibe
# The gateway listens on the container's every address; compose.yaml publishes it on the
# host's 127.0.0.1 only.
ENV LEADVIBE_HOST=0.0.0.0 \
    LEADVIBE_PORT=8000
EXPOSE 8000
CMD ["python", "-m", "ingest_gateway"]
