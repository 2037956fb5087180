# syntax=docker/dockerfile:1
# ModelFleet images, one file, two targets:
#   --target server    the gRPC model server (torch; TORCH_INDEX_URL picks the CPU or a CUDA build)
#   --target operator  the kopf operator (no torch)
# Everything Python comes from a wheelhouse in the build context (.image-build/wheels, made on the
# host by scripts/build-images.sh with `pip wheel`): the build installs with --no-index, so it never
# depends on the network, the host's pip configuration or its CA bundle. Only the CUDA torch build
# (TORCH_INDEX_URL set) reaches an index. scripts/build-images.sh builds both targets from this file
# unchanged with buildah and smoke-tests the server image.

# Pinned by digest (the multi-platform manifest of python:3.11.13-slim-bookworm). Override for a
# local stand-in or a newer patch release: --build-arg BASE_IMAGE=...
ARG BASE_IMAGE=python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

# ---------------------------------------------------------------------------------------------
# Build stages: a virtual environment per image in /opt/venv, made with the base image's own
# interpreter so the final stages (same base) can run it. pip is removed from the venv at the end
# (setuptools too, except in the server, where torch declares it as a runtime dependency). The
# wheelhouse holds exactly one version of each distribution, so --no-index pins every package.
FROM ${BASE_IMAGE} AS server-build
# Empty (default): torch's CPU wheel from the wheelhouse, offline. A CUDA image, built where the
# index is reachable: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
ARG TORCH_INDEX_URL=""
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# One RUN, so the wheelhouse (a bind mount, not a layer) is never copied into the image and pip's
# temporary files never land in a layer. torch goes in first and explicitly: modelfleet-server does
# not list torch, so nothing later can swap the chosen build for another.
RUN --mount=type=bind,source=.image-build/wheels,target=/wheels \
    python3 -m venv /opt/venv \
 && if [ -n "$TORCH_INDEX_URL" ]; then \
        /opt/venv/bin/pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"; \
    else \
        /opt/venv/bin/pip install --no-index --find-links /wheels "torch==${TORCH_VERSION}"; \
    fi \
 && /opt/venv/bin/pip install --no-index --find-links /wheels modelfleet-server \
 && /opt/venv/bin/pip uninstall --yes pip

FROM ${BASE_IMAGE} AS operator-build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN --mount=type=bind,source=.image-build/wheels,target=/wheels \
    python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels modelfleet-operator \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

# Optional, never built unless asked for: the server plus torchvision, so detection and segmentation
# models that call torchvision's compiled operators (torchvision::nms, torchvision::roi_align: listed
# in the operator allow-list, see docs/model-safety.md) load. Build `--target server-torchvision`;
# the default `server` image is untouched. torchvision's build must match torch's exactly (0.28.x for
# torch 2.13, same CUDA tag): with TORCH_INDEX_URL set it comes from that index, otherwise from the
# wheelhouse (add it first: pip wheel --no-deps torchvision==0.28.0 -w .image-build/wheels).
# --no-deps keeps pip from swapping the chosen torch build; the last line proves the pair matches.
# pip comes from the base image's interpreter (the venv's own pip was removed), aimed at the venv.
FROM server-build AS server-torchvision-build
ARG TORCH_INDEX_URL=""
ARG TORCHVISION_VERSION=0.28.0
RUN --mount=type=bind,source=.image-build/wheels,target=/wheels \
    if [ -n "$TORCH_INDEX_URL" ]; then \
        python3 -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps \
            --index-url "$TORCH_INDEX_URL" "torchvision==${TORCHVISION_VERSION}"; \
    else \
        python3 -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps \
            --no-index --find-links /wheels "torchvision==${TORCHVISION_VERSION}"; \
    fi \
 && /opt/venv/bin/python -c "import torch, torchvision; torch.ops.torchvision.nms"

# ---------------------------------------------------------------------------------------------
# Runtime base: a fixed non-root user (numeric, so runAsNonRoot can verify it) with a writable home
# that is also the working directory (generated token files land there when no Secret is mounted).
FROM ${BASE_IMAGE} AS runtime
RUN groupadd --gid 10001 modelfleet \
 && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /home/modelfleet --create-home \
        --shell /usr/sbin/nologin modelfleet
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /home/modelfleet

# ---------------------------------------------------------------------------------------------
FROM runtime AS operator
COPY --from=operator-build /opt/venv /opt/venv
USER 10001:10001
ENTRYPOINT ["/opt/venv/bin/modelfleet-operator"]

# ---------------------------------------------------------------------------------------------
# The optional torchvision server (see server-torchvision-build): same runtime, user and ports.
FROM runtime AS server-torchvision
COPY --from=server-torchvision-build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 7070 7071 7072 8082
ENTRYPOINT ["/opt/venv/bin/modelfleet-server"]

# ---------------------------------------------------------------------------------------------
# Last, so that a plain `docker build .` gives the server. The server binds loopback by default;
# the operator's pod template passes --inference-address 0.0.0.0:7070 etc. explicitly.
FROM runtime AS server
COPY --from=server-build /opt/venv /opt/venv
USER 10001:10001
# inference, management, plaintext health (kubelet probes), metrics: the ports the operator uses.
EXPOSE 7070 7071 7072 8082
ENTRYPOINT ["/opt/venv/bin/modelfleet-server"]
