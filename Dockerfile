# One image for the four services and the index rebuild job; the command picks which:
#   imgsearch serve detector|embedder|index|gateway      (default: gateway)
#   imgsearch index build --catalog URI --out URI
# No model file and no index is ever baked in: services pull models from the model store at start
# (verified by sha256 into IMGSEARCH_*_MODEL_CACHE_DIR) and the index service syncs CURRENT from the
# index store. See docs/deploy.md.
#
# Build: podman build -t imgsearch:dev .   (or docker build; BASE_IMAGE pins the Python base by digest)
# Air-gapped/TLS-intercepting builds: --build-arg PIP_INDEX_URL=... and a CA bundle mounted at
# PIP_CERT (see scripts/image-smoke.sh).

# The tag for people, the digest for the build: a re-pushed tag cannot change what is built. Update both
# together (docs/deploy.md, "Pinned inputs"); a mirror overrides the whole reference with --build-arg.
ARG BASE_IMAGE=python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

# ---------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

# annoy ships no wheels: it is compiled here, and only here (the runtime stage has no compiler). Python
# headers come with python:*-slim; a plain Debian python3 base (scripts/image-smoke.sh) needs python3-dev.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && if [ ! -f "$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then \
         apt-get install -y --no-install-recommends python3-dev; \
       fi \
    && rm -rf /var/lib/apt/lists/*

# Optional: a CA bundle path (mounted at build time) for pip; unset means pip's own bundle. The index URL
# defaults to pip's own default, PyPI.
ARG PIP_CERT
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv \
    && pip install --no-cache-dir "pip==25.2" "setuptools==80.9.0" "wheel==0.45.1"

WORKDIR /src

# Dependencies first (from pyproject.toml only), so source edits do not reinstall them, at the exact
# versions the tests ran with (constraints.txt, written by scripts/lock_constraints.py).
# annoy's setup.py defaults to -march=native -ffast-math: an image built on a new CPU would crash with
# SIGILL on older nodes. Pin a portable baseline instead (x86-64-v2: any x86 server CPU since ~2009).
ARG ANNOY_MARCH=x86-64-v2
COPY pyproject.toml constraints.txt ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && march="" \
    && if [ "$(uname -m)" = x86_64 ] && [ -n "${ANNOY_MARCH}" ]; then march="-march=${ANNOY_MARCH},"; fi \
    && ANNOY_COMPILER_ARGS="${march}-O3,-std=c++14,-DANNOYLIB_MULTITHREADED_BUILD,-D_CRT_SECURE_NO_WARNINGS,-fpermissive" \
        pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt

# Then the application itself (no dependency resolution: they are all installed above). setuptools and wheel
# only build it: no service needs them (pip stays: Dockerfile.train installs torch into this venv).
COPY README.md* ./
COPY imgcore ./imgcore
COPY detector ./detector
COPY embedder ./embedder
COPY ann_index ./ann_index
COPY services ./services
RUN touch README.md \
    && pip install --no-cache-dir --no-deps --no-build-isolation . \
    && pip uninstall -q -y setuptools wheel \
    && python -m compileall -q /opt/venv/lib \
    && imgsearch --help > /dev/null

# ---------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

ARG UID=10001
ARG GID=10001
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="imgsearch" \
      org.opencontainers.image.description="Similar-item image search services (detector, embedder, index, gateway)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed, unprivileged UID/GID: Kubernetes runAsUser/fsGroup and volume ownership rely on it. Not a
# --system account (those stop at UID 999); --no-log-init: no sparse lastlog sized by the UID.
RUN groupadd --gid "${GID}" imgsearch \
    && useradd --no-log-init --uid "${UID}" --gid imgsearch --home-dir /var/lib/imgsearch --no-create-home \
        --shell /usr/sbin/nologin imgsearch \
    && mkdir -p /var/lib/imgsearch /var/cache/imgsearch/models /var/lib/imgsearch/index \
    && chown -R "${UID}:${GID}" /var/lib/imgsearch /var/cache/imgsearch

COPY --from=builder /opt/venv /opt/venv

# Container defaults; every one can be overridden by the environment (Kubernetes ConfigMap).
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/imgsearch \
    ORT_DISABLE_TELEMETRY=1 \
    IMGSEARCH_VAR_DIR=/var/lib/imgsearch \
    IMGSEARCH_DETECTOR_HOST=0.0.0.0 \
    IMGSEARCH_EMBEDDER_HOST=0.0.0.0 \
    IMGSEARCH_INDEX_HOST=0.0.0.0 \
    IMGSEARCH_GATEWAY_HOST=0.0.0.0 \
    IMGSEARCH_DETECTOR_MODEL_CACHE_DIR=/var/cache/imgsearch/models \
    IMGSEARCH_EMBEDDER_MODEL_CACHE_DIR=/var/cache/imgsearch/models \
    IMGSEARCH_INDEX_LOCAL_DIR=/var/lib/imgsearch/index

USER ${UID}:${GID}
WORKDIR /var/lib/imgsearch
# gateway, detector, embedder, index (the settings' default ports).
EXPOSE 8000 8101 8102 8103

# No HEALTHCHECK: the port depends on the service this container runs; Kubernetes probes /livez and
# /readyz per Deployment (k8s/base), and scripts/image-smoke.sh polls them from the host.
ENTRYPOINT ["imgsearch"]
CMD ["serve", "gateway"]
