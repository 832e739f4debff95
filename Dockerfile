# The mfrm daemon (`mfrm run`) as a container image.
#
#   docker build -t mfrm:0.1.0 .
#   docker build -t mfrm:0.1.0 --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index> .
#   docker build -t mfrm:0.1.0 --build-arg PYTHON_IMAGE=<base> --build-arg PIP_INDEX_URL=<index> .
#
# Two stages: `build` makes a virtual environment with mfrm and its runtime dependencies; `runtime`
# copies that environment (and nothing else of the build) into a slim Python image, runs as an
# unprivileged user and writes only under /var/lib/mfrm (the state volume: checkpoints and run
# output) and /tmp. It works with a read-only root filesystem; docs/operator-guide.md explains.
# Nothing here needs BuildKit: the classic builder (DOCKER_BUILDKIT=0) builds it as well, and no
# frontend image is named, so that a build never has to reach a registry for one.

# The base of both stages: any Debian-family image with python3 (3.11 or newer), its venv module,
# and groupadd/useradd. The default is the official slim image; scripts/make-base-image.sh makes an
# equivalent one from Debian's packages where no image can be pulled.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# torch is pinned in pyproject.toml (torch==2.13.0). On the default index the Linux wheel of that
# version depends on the CUDA libraries (several GB) that a CPU-only daemon never loads. Pass the
# URL of PyTorch's CPU wheel index as TORCH_INDEX_URL to install the CPU-only build of the same
# version first; the project install below then finds the pin already satisfied. Left empty, the
# build still works and only the image is larger.
ARG TORCH_INDEX_URL=""
ARG TORCH_VERSION=2.13.0
# Where pip finds every other package (and the build backend, setuptools). Unset, pip uses PyPI; a
# mirror, or an index of wheels on the building machine (scripts/build-image.sh serves one on
# 127.0.0.1 and builds with --network host), keeps the build off the internet.
ARG PIP_INDEX_URL

# python3, not python: Debian's own python3 package (a base made from it) has no `python` command.
RUN python3 -m venv /opt/mfrm
ENV PATH=/opt/mfrm/bin:$PATH

RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"; \
    fi

# The runtime dependencies first, from pyproject.toml alone, so that a change of the source reuses
# this layer (about 1.5 GB with torch) instead of installing it again. Only [project].dependencies:
# no [test] or [dev] extras. The Kubernetes and Docker API clients are what the `openwhisk` backend
# uses to act on invokers; the image asks for the versions it was tested with (docs/backends.md,
# "Dependencies", gives these bounds).
WORKDIR /app
COPY pyproject.toml ./
RUN python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt "kubernetes>=37" "docker>=7.1" \
    && rm /tmp/requirements.txt

# Then the source tree, installed in place at /app (an editable install): the simulated backend reads
# the shipped trace sample from data/ beside the packages, so the packages and data/ must keep their
# layout. What the install writes into /opt/mfrm is kept the same from build to build, so that the
# runtime stage reuses its copy of /opt/mfrm (1.5 GB) when only the code changed: --no-compile (the
# bytecode of the install's one module there would carry the build's time; /app is compiled below),
# and a one-line README.md in place of the repository's, which the package metadata in /opt/mfrm
# would otherwise carry in full (the image has no pip to show it).
RUN echo "mfrm: the mean-field resource manager daemon; see the project's README.md" > README.md
COPY policies/ policies/
COPY mfg/ mfg/
COPY simulator/ simulator/
COPY workload/ workload/
COPY controller/ controller/
COPY localwhisk/ localwhisk/
COPY data/ data/
RUN pip install --no-deps --no-compile -e /app \
    && python -m compileall -q /app \
    && pip uninstall -y pip setuptools wheel

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# Kept equal to [project].version of pyproject.toml (a test checks it); CI may pass the tag.
ARG MFRM_VERSION=0.1.0

LABEL org.opencontainers.image.title="mfrm" \
      org.opencontainers.image.description="Mean-field resource manager for OpenWhisk: the mfrm run daemon" \
      org.opencontainers.image.version="${MFRM_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric user, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 mfrm \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin mfrm \
    && mkdir -p /var/lib/mfrm /etc/mfrm \
    && chown 10001:10001 /var/lib/mfrm

COPY --from=build /opt/mfrm /opt/mfrm
COPY --from=build /app /app

# Nothing is written beside the code at run time (read-only root): no bytecode files, and the
# caches of numba and matplotlib go to /tmp (an emptyDir in the Helm chart).
ENV PATH=/opt/mfrm/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    MPLCONFIGDIR=/tmp/matplotlib

# Relative paths of the settings (output.out_dir = runs/latest, checkpoints below it) land here.
WORKDIR /var/lib/mfrm
VOLUME ["/var/lib/mfrm"]

USER 10001:10001

# /metrics and /healthz (daemon.metrics_port).
EXPOSE 9471

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9471/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["mfrm", "run"]
CMD []
