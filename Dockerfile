# One image for the webhook and the speaker: `l2guard webhook ...` or `l2guard speaker ...` (docs/image.md).
#
#   podman build -t l2guard:0.2.0 .                          # or: docker build -t l2guard:0.2.0 .
#   podman build --build-arg BASE=localhost/my-python .      # another base with python3 and its venv module
#
# The first stage builds the wheel and installs it with its dependencies into a virtualenv; the final stage copies
# only that virtualenv, so no wheel, compiler, pip or setuptools of ours reaches it (tests/image/ checks every layer).

# The base must have python3 with the venv module (ensurepip) and the same interpreter path in both stages.
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS build
# pip reads the system CA bundle (a proxy's CA may be mounted over it for the build; it is not copied on).
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY l2core ./l2core
COPY l2guard ./l2guard
COPY webhook ./webhook
COPY speaker ./speaker
# The installer tools leave the venv afterwards: the final image needs none of them.
RUN python3 -m venv /opt/l2guard \
    && /opt/l2guard/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/l2guard/bin/pip install /wheels/l2guard-*.whl \
    && /opt/l2guard/bin/pip uninstall --yes setuptools pip \
    && /opt/l2guard/bin/l2guard --version

FROM ${BASE}
ARG BASE
# Kept equal to pyproject.toml's version by tests/image/ (a build without --build-arg must label the right version).
ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="l2guard" \
      org.opencontainers.image.description="Admission webhook and MetalLB-compatible layer-2 speaker for bare-metal LoadBalancer IPs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE}"
COPY --from=build /opt/l2guard /opt/l2guard
# Read-only root filesystems: write no bytecode at run time (the venv was compiled at install).
ENV PATH=/opt/l2guard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Non-root by default (65532, "nonroot" in distroless images): the webhook needs nothing more. The speaker's
# DaemonSet runs it as UID 0 with CAP_NET_RAW alone, as Kubernetes gives a non-root user no added capability
# (docs/image.md).
USER 65532:65532
ENTRYPOINT ["l2guard"]
CMD ["--help"]
