# syntax=docker/dockerfile:1
# async-updater in a small image: the wheel built from this tree, installed with the extras for
# progress display, --shared-limit (Redis) and uvloop, run as a non-root user.
#
#   docker build -t async-updater:0.1.0 .
#   docker run --rm async-updater:0.1.0 --version
#   docker tag async-updater:0.1.0 registry.example.com/async-updater:0.1.0   # your registry
#   docker push registry.example.com/async-updater:0.1.0
#
# tests/test_image.py builds the same wheel, installs it with the EXTRAS below into a clean venv
# and runs its entrypoint, so what this image would run is tested without a Docker engine.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY async_updater ./async_updater
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim
ARG EXTRAS=progress,redis,fast
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /tmp/wheels
# The wheel by its path, not by name from an index: an index could serve another package
# called async-updater.
RUN python -m pip install "$(ls /tmp/wheels/async_updater-*.whl)[${EXTRAS}]" \
    && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /work updater \
    && mkdir /work \
    && chown 10001:10001 /work
# A numeric user, so Kubernetes' runAsNonRoot can check it. /work belongs to it: a named volume
# mounted there starts with that owner, so reports can be written.
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["async-updater"]
CMD ["--help"]
