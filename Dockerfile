# syntax=docker/dockerfile:1.7
#
# explaind: one image for CPU and GPU nodes.
#
#   docker build -t explaind:dev .
#   docker run --rm -p 8500:8500 -p 8501:8501 -v explaind-store:/var/lib/explaind/store explaind:dev
#   docker run --rm --gpus all ... (same image; TensorFlow and FAISS use the GPU when they see one)
#
# It installs `.[gpu,s3,gcs]` with pip, from PyPI alone:
#
# - FAISS is faiss-gpu-cuvs (>= 1.15.1), FAISS built with NVIDIA cuVS. Only
#   cuVS builds apply IDSelector filters (restricts, crowding) on the GPU;
#   the classic faiss-gpu-cu12 / faiss-gpu wheels ignore them there. It is
#   the first pip wheel of such a build, and it is built for CUDA 13: it
#   brings nvidia-* 13.x wheels (no -cuXX suffix, all in nvidia/cu13/lib)
#   and libcuvs-cu13, libraft-cu13, librmm-cu13.
# - TensorFlow is tensorflow[and-cuda], built for CUDA 12: it brings the
#   nvidia-*-cu12 wheels (cuDNN, cuBLAS, ... in nvidia/<library>/lib).
#
# Both CUDA majors sit side by side (different package names, and sonames
# that carry the major), so pip resolves them without a conflict
# (tests/deploy/test_gpu_install.py runs its resolver on this set). Only
# NCCL is shipped twice at one path: nvidia-nccl-cu12 and nvidia-nccl-cu13
# both write nvidia/nccl/lib/libnccl.so.2, and pip keeps whichever it
# installs last; the install step below reinstalls the CUDA 13 one so that
# the outcome does not depend on pip's order, and deploy/check_gpu_env.py
# fails the build on any other such overlap, a second FAISS or TensorFlow,
# or a FAISS without cuVS. Two sonames exist in both majors, in different
# folders: libcusparse.so.12 and libcurand.so.10. A library that needs one
# of them by soname gets the copy already loaded, if any, and libraft's
# RPATH looks in the CUDA 12 folders first: the order in which the server
# loads FAISS and TensorFlow decides which copy each uses.
#
# All of CUDA comes as wheels, which is why the base is CUDA's small `base`
# flavour and not `cudnn-runtime`, which would ship a third, system-wide
# cuDNN/cuBLAS (about 2.5 GB) that nothing loads. The base still matters:
# it sets NVIDIA_VISIBLE_DEVICES and NVIDIA_DRIVER_CAPABILITIES, which the
# NVIDIA container runtime reads to mount the host's driver, and
# NVIDIA_REQUIRE_CUDA, which makes the runtime refuse a GPU node whose
# driver is too old. Only the driver comes from the node: it must support
# CUDA 13 (R580 or newer), hence a 13.0 base (13.0, not newer, so that
# every R580 driver passes; the 13.x wheels run there by CUDA's minor
# version compatibility, except that GPUs newer than Hopper JIT-compile
# FAISS's PTX, which needs a driver as new as the wheels' CUDA 13.x). On a
# node without a GPU nothing is mounted, TensorFlow finds no device and
# FAISS reports no GPU, and both run on the CPU (faiss-gpu-cuvs holds the
# whole CPU FAISS; importing it loads its CUDA libraries but needs no
# driver).
#
# Ubuntu 24.04 for its Python 3.12 (22.04's Python 3.10 is past its end of
# life; faiss-gpu-cuvs needs 3.11 or newer). The wheels are x86-64 builds.

ARG CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04

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

# A current pip first: Ubuntu's (24.0) does not match pins such as
# faiss-gpu-cuvs's `libcuvs-cu13==26.06.*` and would fall back to a FAISS
# whose cuVS libraries do not fit it.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir "pip==26.3"
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that editing the sources
# does not re-download TensorFlow and CUDA (about 5 GB of wheels) on every
# build. Then nvidia-nccl-cu13 again, in the version just resolved, so that
# its copy of nvidia/nccl/ is the one on disk (see above).
COPY pyproject.toml README.md ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; x = p["optional-dependencies"]; print("\n".join(p["dependencies"] + x["gpu"] + x["s3"] + x["gcs"] + x["ray"]))' > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && nccl="$(python -c 'import importlib.metadata as m; print(m.version("nvidia-nccl-cu13"))')" \
 && pip install --no-cache-dir --no-deps --force-reinstall "nvidia-nccl-cu13==${nccl}"

# Then explaind itself. The extras are already satisfied; naming them again
# makes pip check that nothing was missed above. ("./[...]" is ".[...]";
# spelled with the slash, hadolint sees a local path, not an unpinned package.)
# The checks need no GPU: one FAISS (faiss-gpu-cuvs, a cuVS build; never
# faiss-cpu or a classic faiss-gpu beside it), one TensorFlow, no two wheels
# writing one file except the settled NCCL, and the server imports.
COPY proto/ proto/
COPY client/ client/
COPY server/ server/
COPY deploy/check_gpu_env.py /tmp/check_gpu_env.py
RUN pip install --no-cache-dir "./[gpu,s3,gcs,ray]" \
 && python /tmp/check_gpu_env.py \
 && python -c "import faiss, grpc_health.v1.health_pb2, explaind.server, ray.data; print('faiss', faiss.__version__)"

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
    EXPLAIND_HTTP_PORT=8080 \
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

# 8500: gRPC (explaind.v1, Vertex AI's PredictionService, Operations, Health,
# reflection). 8501: /metrics. 8080: Vertex AI's REST API.
EXPOSE 8500 8501 8080

# For docker and compose; Kubernetes probes gRPC health natively instead.
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
  CMD ["/opt/venv/bin/python", "/opt/explaind/healthcheck.py"]

ENTRYPOINT ["/usr/bin/tini", "--", "explaind"]
CMD ["serve"]

LABEL org.opencontainers.image.title="explaind" \
      org.opencontainers.image.description="gRPC daemon serving example-based and feature-based explanations for TensorFlow models" \
      org.opencontainers.image.licenses="Apache-2.0"
