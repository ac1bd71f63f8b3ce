# syntax=docker/dockerfile:1
# The robot: runs the head, quantizes and packs the features, sends the frame to the edge. No torch.
#
# Default: an NVIDIA Jetson on JetPack 6 (L4T r36.4: Ubuntu 22.04, Python 3.10, CUDA 12.6, cuDNN 9, TensorRT 10.3),
# with Jetson AI Lab's onnxruntime-gpu build (TensorRT, CUDA and CPU execution providers). Build it on the Jetson
# (or with buildx for linux/arm64) and run it with the nvidia runtime: docker-compose.jetson.yml does both.
#
# A CPU-only robot (any architecture), the build that docker-compose.yml makes by default:
#   docker build -f Dockerfile.robot --build-arg BASE_IMAGE=python:3.11.14-slim-bookworm \
#       --build-arg ORT_PACKAGE=onnxruntime --build-arg ORT_VERSION=1.32.0 --build-arg ORT_INDEX_URL= .
# Other JetPack versions: docs/deployment.md.
ARG BASE_IMAGE=nvcr.io/nvidia/l4t-jetpack:r36.4.0

FROM ${BASE_IMAGE} AS build
# onnxruntime-gpu 1.23.0 is a cp310 wheel on the JetPack 6 / CUDA 12.6 index; ORT_INDEX_URL is searched besides PyPI
# (PyPI has no aarch64 onnxruntime-gpu, so the Jetson build cannot be picked from the wrong index).
ARG ORT_PACKAGE=onnxruntime-gpu
ARG ORT_VERSION=1.23.0
ARG ORT_INDEX_URL=https://pypi.jetson-ai-lab.io/jp6/cu126/+simple/
ARG PIP_VERSION=26.3
ARG SETUPTOOLS_VERSION=84.2.1
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The L4T image needs python3-venv from Ubuntu; a python:* base already has it, and apt is skipped.
# DL3008: the apt package versions are fixed by the base image's tag (Ubuntu 22.04 for L4T r36.4); pinning them
# here would break every other BASE_IMAGE this file supports.
# hadolint ignore=DL3008
RUN if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (this layer is cached until pyproject.toml or the pins change): the core dependencies and the
# [robot] extra, with its onnxruntime swapped for ORT_PACKAGE (the two builds overwrite each other).
COPY pyproject.toml README.md ./
COPY docker/requirements.py docker/constraints.txt docker/
RUN pip install "pip==${PIP_VERSION}" "setuptools==${SETUPTOOLS_VERSION}" \
    && python docker/requirements.py robot --replace onnxruntime "${ORT_PACKAGE}==${ORT_VERSION}" > /tmp/requirements.txt \
    && pip install ${ORT_INDEX_URL:+--extra-index-url "${ORT_INDEX_URL}"} \
        --constraint docker/constraints.txt --requirement /tmp/requirements.txt
COPY common common
COPY model_splitter model_splitter
COPY robot_inference robot_inference
COPY edge_inference edge_inference
WORKDIR /
RUN pip install --no-deps --no-build-isolation /src \
    && python -c "import robot_inference.app" \
    && if python -c "import torch" 2>/dev/null; then echo "torch must not be in the robot image" >&2; exit 1; fi

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG SOURCE_URL=""
ARG REVISION=""
LABEL org.opencontainers.image.title="splitbot-robot" \
      org.opencontainers.image.description="splitbot robot: runs the head of a split network, sends quantized features to the edge" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Only the interpreter the virtual environment links to (already there on a python:* base).
# DL3008: as in the build stage, the base image's tag fixes the apt package versions.
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --system --uid 10001 --user-group --create-home --shell /usr/sbin/nologin splitbot \
    && mkdir -p /data/robot \
    && chown splitbot:splitbot /data/robot
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/splitbot/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ROBOT_HOST=0.0.0.0 \
    ROBOT_PORT=8001 \
    ROBOT_DATA_DIR=/data/robot
USER 10001:10001
WORKDIR /home/splitbot
EXPOSE 8001
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "/opt/splitbot/healthcheck.py", "ROBOT"]
CMD ["python", "-m", "robot_inference"]
