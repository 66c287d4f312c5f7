# syntax=docker/dockerfile:1.7
#
# explaind: one image for CPU and GPU nodes.
#
#   docker build -t explaind:dev .
#   docker run --rm -p 8500:8500 -p 8501:8501 -v explaind-store:/var/lib/explaind/store explaind:dev
#   docker run --rm --gpus all ... (same image; TensorFlow and FAISS use the GPU when they see one)
#
# It installs `.[gpu,s3,gcs]`: tensorflow[and-cuda] and faiss-gpu-cu12 bring
# CUDA, cuDNN and cuBLAS as pip wheels (nvidia-*-cu12), which is why the base
# is CUDA's small `base` flavour and not `cudnn-runtime`: that one would ship
# a second, system-wide cuDNN/cuBLAS (about 2.5 GB) that neither library
# loads. The base still matters: it sets NVIDIA_VISIBLE_DEVICES and
# NVIDIA_DRIVER_CAPABILITIES, which the NVIDIA container runtime reads to
# mount the host's driver. Only the driver comes from the node (any driver
# that supports CUDA 12). On a node without a GPU nothing is mounted,
# TensorFlow finds no device and FAISS reports no GPU, and both run on the
# CPU.
#
# Ubuntu 24.04 for its Python 3.12 (22.04's Python 3.10 is past its end of
# life). The wheels are x86-64 builds.

ARG CUDA_IMAGE=nvidia/cuda:12.9.1-base-ubuntu24.04

# ------------------------------------------------------------------ builder
# Resolves and installs everything into /opt/venv; the runtime stage copies
# that folder alone (no pip caches, no build tools, no sources).
FROM ${CUDA_IMAGE} AS builder

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that editing the sources
# does not re-download TensorFlow and CUDA (several GB) on every build.
COPY pyproject.toml README.md ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; x = p["optional-dependencies"]; print("\n".join(p["dependencies"] + x["gpu"] + x["s3"] + x["gcs"] + x["ray"]))' > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt

# Then explaind itself. The extras are already satisfied; naming them again
# makes pip check that nothing was missed above. ("./[...]" is ".[...]";
# spelled with the slash, hadolint sees a local path, not an unpinned package.)
COPY proto/ proto/
COPY client/ client/
COPY server/ server/
RUN pip install --no-cache-dir "./[gpu,s3,gcs,ray]" \
 && python -c "import faiss, grpc_health.v1.health_pb2, explaind.server, ray.data; print('faiss', faiss.__version__)" \
 && if pip show faiss-cpu >/dev/null 2>&1; then echo "faiss-cpu and faiss-gpu must not share an environment" >&2; exit 1; fi

# ------------------------------------------------------------------ runtime
FROM ${CUDA_IMAGE} AS runtime

ARG EXPLAIND_UID=10001
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# python3: the interpreter the venv was made with (same base, same path).
# tini: PID 1 that forwards SIGTERM to the server (graceful drain) and reaps
# children. libgomp1: OpenMP for FAISS on the CPU.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates tini libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid "${EXPLAIND_UID}" explaind \
 && useradd --uid "${EXPLAIND_UID}" --gid "${EXPLAIND_UID}" --no-log-init \
      --home-dir /home/explaind --create-home --shell /usr/sbin/nologin explaind \
 && mkdir -p /var/lib/explaind/store \
 && chown -R "${EXPLAIND_UID}:${EXPLAIND_UID}" /var/lib/explaind

COPY --from=builder /opt/venv /opt/venv
COPY deploy/healthcheck.py /opt/explaind/healthcheck.py

# Defaults; every EXPLAIND_* setting can be overridden with -e or in the
# Kubernetes ConfigMap. The store defaults to the volume below: fine for one
# container, while several replicas share an s3:// or gs:// store.
# TF_FORCE_GPU_ALLOW_GROWTH: TensorFlow takes GPU memory as it needs it
# instead of nearly all of it at start, so FAISS indexes fit beside it.
# Caches go to /tmp: Kubernetes runs the image with a read-only root.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EXPLAIND_PORT=8500 \
    EXPLAIND_METRICS_PORT=8501 \
    EXPLAIND_STORE=/var/lib/explaind/store \
    EXPLAIND_LOG_LEVEL=INFO \
    TF_CPP_MIN_LOG_LEVEL=1 \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    HOME=/home/explaind \
    XDG_CACHE_HOME=/tmp/.cache \
    KERAS_HOME=/tmp/.keras \
    CUDA_CACHE_PATH=/tmp/.nv/ComputeCache

VOLUME ["/var/lib/explaind/store"]
WORKDIR /home/explaind
USER ${EXPLAIND_UID}:${EXPLAIND_UID}

# 8500: gRPC (explaind.v1, Operations, Health, reflection). 8501: /metrics.
EXPOSE 8500 8501

# For docker and compose; Kubernetes probes gRPC health natively instead.
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
  CMD ["/opt/venv/bin/python", "/opt/explaind/healthcheck.py"]

ENTRYPOINT ["/usr/bin/tini", "--", "explaind"]
CMD ["serve"]

LABEL org.opencontainers.image.title="explaind" \
      org.opencontainers.image.description="gRPC daemon serving example-based and feature-based explanations for TensorFlow models" \
      org.opencontainers.image.licenses="Apache-2.0"
