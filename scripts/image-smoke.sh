#!/usr/bin/env bash
# Image smoke test (not in CI: minutes of building). Builds the Dockerfile WITHOUT a Docker engine
# (podman/buildah, chroot isolation), then runs the image the way Kubernetes will (non-root, read-only
# root filesystem, writable volumes only for /tmp and the model cache) and checks that:
#   1. the image holds no model file (*.onnx) and no compiler, and runs as UID 10001;
#   2. `imgsearch serve embedder` PULLS its model from an http:// model store at start, verifies its
#      sha256 pin, and answers /livez and /readyz (200) and /metrics (imgsearch_model_info).
#
# Usage: scripts/image-smoke.sh            (root; needs: apt-get install podman buildah runc debootstrap)
# Env:   BASE_IMAGE=...   use this base instead of python:3.11.x-slim-bookworm / a debootstrap rootfs
#        KEEP=1           keep the image and the work folder afterwards
#        PORT=18102       host port of the embedder (the container shares the host network)
#
# Without internet the python:*-slim base cannot be pulled: a Debian bookworm rootfs with python3 is
# made with debootstrap and imported with `podman import` (Debian's python3 is 3.11 too). pip inside the
# build reaches PyPI through the host's CA bundle (mounted, ARG PIP_CERT). This sandbox also needs
# `--runtime runc` and explicit ulimits for `podman run`, and `--network=host`.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/imgsearch:smoke}
PORT=${PORT:-18102}
STORE_PORT=${STORE_PORT:-18180}
WORK=${WORK:-$(mktemp -d /tmp/imgsearch-smoke.XXXXXX)}
mkdir -p "$WORK"
CONTAINER=imgsearch-smoke-$$
# shellcheck source=scripts/smoke-common.sh
. scripts/smoke-common.sh

# --- 1. base image -----------------------------------------------------------------------------------
DEFAULT_BASE=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)
if [ -z "${BASE_IMAGE:-}" ]; then
  if podman image exists "$DEFAULT_BASE" || timeout 60 podman pull -q "docker.io/library/$DEFAULT_BASE" >/dev/null 2>&1; then
    BASE_IMAGE=$DEFAULT_BASE
  else
    BASE_IMAGE=localhost/imgsearch-base:bookworm
    if ! podman image exists "$BASE_IMAGE"; then
      command -v debootstrap >/dev/null || { echo "no registry and no debootstrap" >&2; exit 2; }
      log "no registry image: building a bookworm rootfs with debootstrap (a few minutes)"
      MIRROR=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
      debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$WORK/rootfs" "${MIRROR:-http://deb.debian.org/debian}" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; exit 1; }
      rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb
      tar -C "$WORK/rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null
      rm -rf "$WORK/rootfs"
    fi
  fi
fi
log "base image: $BASE_IMAGE"

# --- 2. build ----------------------------------------------------------------------------------------
log "building $IMAGE (BUILDAH_ISOLATION=chroot)"
start=$(date +%s)
podman build --network=host \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --build-arg PIP_CERT=/run/host-ca.crt \
  -v "$HOST_CA:/run/host-ca.crt:ro" \
  -t "$IMAGE" . 2>&1 | tee "$WORK/build.log" | grep -E '^(STEP|COMMIT|Successfully|Error)' || true
podman image exists "$IMAGE" || { tail -40 "$WORK/build.log"; echo "build failed" >&2; exit 1; }
echo "built in $(( $(date +%s) - start ))s; size $(podman image inspect "$IMAGE" --format '{{.Size}}' | numfmt --to=iec)"

# --- 3. static checks of the image --------------------------------------------------------------------
log "image contents"
check=$(podman run --rm "${RUN_OPTS[@]}" --entrypoint /bin/sh "$IMAGE" -c '
  echo "uid=$(id -u) gid=$(id -g)"
  # onnxruntime bundles three tiny sample graphs (onnxruntime/datasets): library files, not models.
  echo "onnx=$(find / -xdev \( -name "*.onnx" -o -name "*.ann" \) 2>/dev/null | grep -v -e ^/proc -e /site-packages/onnxruntime/datasets/ | wc -l)"
  echo "compilers=$(for c in gcc g++ cc c++ make; do command -v $c; done | wc -l)"
  imgsearch --help >/dev/null && echo cli=ok')
echo "$check"
grep -qx 'uid=10001 gid=10001' <<<"$check" || { echo "FAIL: not UID 10001" >&2; exit 1; }
grep -qx 'onnx=0' <<<"$check" || { echo "FAIL: model or index files in the image" >&2; exit 1; }
grep -qx 'compilers=0' <<<"$check" || { echo "FAIL: a compiler in the final image" >&2; exit 1; }
grep -qx 'cli=ok' <<<"$check" || { echo "FAIL: imgsearch CLI" >&2; exit 1; }

# --- 4. a model store over http:// -------------------------------------------------------------------
log "model store: publish models/ to file://$WORK/store, serve it on http://127.0.0.1:$STORE_PORT"
start_store "$STORE_PORT"
SHA=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha256"])' "$WORK/store/fmnist-lite0/card.json")

# --- 5. run the embedder like the Deployment does ----------------------------------------------------
# The model cache volume: an empty folder owned by the image's UID (Kubernetes: emptyDir + fsGroup).
mkdir -p "$WORK/cache" && rm -rf "${WORK:?}/cache/"* && chown 10001:10001 "$WORK/cache"
log "run: serve embedder, read-only root, model pulled from http://127.0.0.1:$STORE_PORT/fmnist-lite0"
podman run -d --name "$CONTAINER" "${RUN_OPTS[@]}" \
  --read-only --tmpfs /tmp:rw,size=64m \
  -v "$WORK/cache:/var/cache/imgsearch/models:rw" \
  -e IMGSEARCH_EMBEDDER_PORT="$PORT" \
  -e IMGSEARCH_EMBEDDER_MODEL_URI="http://127.0.0.1:$STORE_PORT/fmnist-lite0" \
  -e IMGSEARCH_EMBEDDER_MODEL_SHA256="$SHA" \
  "$IMAGE" serve embedder >/dev/null

ok=""
for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then ok=1; break; fi
  if [ "$(podman inspect -f '{{.State.Running}}' "$CONTAINER")" != true ]; then break; fi
  sleep 1
done
podman logs "$CONTAINER" 2>&1 | tail -15
[ -n "$ok" ] || { echo "FAIL: /readyz never answered 200" >&2; exit 1; }
for path in /livez /readyz; do
  printf '%-8s %s\n' "$path" "$(curl -fsS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT$path")"
done
curl -fsS "http://127.0.0.1:$PORT/metrics" | grep -E '^imgsearch_model_(info|load_seconds)' || {
  echo "FAIL: no model metrics" >&2; exit 1; }
grep -q 'GET /fmnist-lite0/model.onnx' "$WORK/store.log" || { echo "FAIL: the model was not pulled over http" >&2; exit 1; }
log "PASS: image built without a Docker engine; embedder pulled its model over http, verified sha256 ${SHA:0:12}, ready"
