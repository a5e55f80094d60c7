#!/usr/bin/env bash
# Image smoke test, run by .ci/run: builds the Dockerfile without a Docker engine (podman, chroot isolation) and
# runs the image as k8s/base runs its pods, then as compose.yaml does. It checks that:
#   1. the image holds no model file, no compiler, runs as UID 10001 and its CLI works;
#   2. the rebuild CronJob's container publishes an index (embedder pulled from a model store container);
#   3. detector, embedder, index and gateway run exactly as their Deployments (env files, user, read-only root
#      with only the pods' emptyDir mounts, no capabilities, no-new-privileges, memory limits, the int8
#      embedder), pull their models at start, get ready, answer one real search through the gateway, and log
#      no warning;
#   4. a second rebuild publishes a new version and the index container swaps to it;
#   5. SIGTERM stops every service with exit code 0;
#   6. compose.yaml comes up (store, demo index build, four services), answers a search, goes down.
# Everything it started is removed at exit, failed or not (containers, volumes, networks, the image unless
# KEEP=1); the Debian base image it may make stays as a cache (one a day). Last line: JSON.
#
# Usage: scripts/image-smoke.sh    (root or sudo; installs podman, buildah, mmdebstrap, runc, netavark,
#                                   aardvark-dns, uidmap from apt and podman-compose from PyPI when missing;
#                                   needs dataset-fashion-mnist, as the tests do)
# Env:   BASE_IMAGE=...   build on this base (default: the Dockerfile's pinned python:*-slim when a registry
#                         answers, else a bookworm rootfs made by mmdebstrap from the apt mirror)
#        KEEP=1           keep the image and the work folder; SMOKE_TIMEOUT_S=1500 bounds the whole run
#        COMPOSE=0        skip the compose part
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SMOKE_TIMED:-}" ]; then
  export SMOKE_TIMED=1
  exec timeout -k 60 "${SMOKE_TIMEOUT_S:-1500}" "$0" "$@"
fi

RUN=imgsearch-smoke-$$
NET=$RUN
IMAGE=${IMAGE:-localhost/imgsearch:$RUN}
ITEMS=${ITEMS:-600}
PHOTO=tests/data/photos/person.jpg
WORK=${WORK:-$(mktemp -d /tmp/imgsearch-smoke.XXXXXX)}
mkdir -p "$WORK"
CONTAINER=""
# shellcheck source=scripts/smoke-common.sh
. scripts/smoke-common.sh
# shellcheck source=scripts/smoke-pods.sh
. scripts/smoke-pods.sh
on_exit remove_run
[ "${KEEP:-0}" = 1 ] || on_exit "podman rmi -f $IMAGE"

ensure_tools compose
private_podman_conf
ensure_base
log "base image: $BASE_IMAGE; building $IMAGE"
start=$SECONDS
build_image "$IMAGE"
IMAGE_MIB=$(( $(podman image inspect "$IMAGE" --format '{{.Size}}') / 1048576 ))
echo "built in $((SECONDS - start)) s, $IMAGE_MIB MiB"

log "image contents"
check=$(podman run --rm --label "$LABEL" --entrypoint /bin/sh "$IMAGE" -c '
  echo "uid=$(id -u) gid=$(id -g)"
  # onnxruntime bundles three tiny sample graphs (onnxruntime/datasets): library files, not models.
  echo "onnx=$(find / -xdev \( -name "*.onnx" -o -name "*.ann" \) 2>/dev/null | grep -v -e ^/proc -e /site-packages/onnxruntime/datasets/ | wc -l)"
  echo "compilers=$(for c in gcc g++ cc c++ make; do command -v $c; done | wc -l)"
  imgsearch --help >/dev/null && echo cli=ok') || fail "the image's contents check (output above)"
echo "$check"
grep -qx 'uid=10001 gid=10001' <<<"$check" || fail "not UID 10001"
grep -qx 'onnx=0' <<<"$check" || fail "model or index files in the image"
grep -qx 'compilers=0' <<<"$check" || fail "a compiler in the final image"
grep -qx 'cli=ok' <<<"$check" || fail "imgsearch CLI"

log "inputs: models/ published to a store folder, a $ITEMS-item Fashion-MNIST catalog"
python -m services.cli models publish --to "file://$WORK/store" >/dev/null
python -m services.cli catalog fashion-mnist --out "$WORK/catalog" --limit "$ITEMS" >/dev/null
chmod -R a+rX "$WORK"
podman network create --label "$LABEL" "$NET" >/dev/null

# The model store: the image itself serving the published folder over http:// (read-only, UID 10001).
STORE=http://imgsearch-model-store:9000
podman run -d --name "$RUN-imgsearch-model-store" --label "$LABEL" --network "$NET" \
  --network-alias imgsearch-model-store --user 10001:10001 --read-only --cap-drop=ALL \
  -v "$WORK/store:/srv/store:ro" --entrypoint python "$IMAGE" -m http.server 9000 --directory /srv/store >/dev/null
# What an overlay changes: the stores' URIs (s3:// in k8s/base), and a short poll so the swap shows quickly.
OVERRIDES=(
  "IMGSEARCH_DETECTOR_MODEL_URI=$STORE/nanodet-m" "IMGSEARCH_DETECTOR_POSE_MODEL_URI=$STORE/movenet-lightning"
  "IMGSEARCH_DETECTOR_PEOPLE_MODEL_URI=$STORE/movenet-multipose"
  "IMGSEARCH_EMBEDDER_MODEL_URI=$STORE/fmnist-lite0-int8" "IMGSEARCH_INDEX_INDEX_URI=file:///var/lib/imgsearch/store/index"
  "CATALOG_URI=/srv/catalog/catalog.jsonl" IMGSEARCH_INDEX_POLL_SECONDS=2
)
store_volume index-store
rebuild() {
  run_job "rebuild-$1" rebuild -v "$RUN-index-store:/var/lib/imgsearch/store" -v "$WORK/catalog:/srv/catalog:ro" \
    -- "${OVERRIDES[@]}"
  cat "$(podman volume inspect -f '{{.Mountpoint}}' "$RUN-index-store")/index/CURRENT"
}
log "rebuild job container: first index"
start=$SECONDS
V1=$(rebuild 1)
echo "published $V1 in $((SECONDS - start)) s"

log "the four services, as their Deployments"
start=$SECONDS
run_pod imgsearch-detector detector -- "${OVERRIDES[@]}"
run_pod imgsearch-embedder embedder -- "${OVERRIDES[@]}"
run_pod imgsearch-index index -v "$RUN-index-store:/var/lib/imgsearch/store:ro" -- "${OVERRIDES[@]}"
run_pod imgsearch-gateway gateway -- "${OVERRIDES[@]}"
for svc in detector:8101 embedder:8102 index:8103 gateway:8000; do wait_ready "imgsearch-${svc%:*}" "${svc#*:}" 300; done
READY_S=$((SECONDS - start))
GATEWAY="http://$(pod_ip imgsearch-gateway):8000"
read -r ITEMS_FOUND VERSION < <(search "$GATEWAY" "$PHOTO")
echo "ready in $READY_S s; search: $ITEMS_FOUND items with results, index $VERSION"
[ "$ITEMS_FOUND" -ge 1 ] && [ "$VERSION" = "$V1" ] || fail "search answered $ITEMS_FOUND items on $VERSION"

log "rebuild job container: a new version, and the index swaps to it"
V2=$(rebuild 2)
[ "$V2" != "$V1" ] || fail "the second rebuild published no new version"
deadline=$((SECONDS + 60))
until [ "$VERSION" = "$V2" ] || [ "$SECONDS" -ge "$deadline" ]; do
  sleep 1
  read -r _ VERSION < <(search "$GATEWAY" "$PHOTO")
done
[ "$VERSION" = "$V2" ] || fail "the index still serves $VERSION, not $V2"
echo "swapped to $V2"

log "SIGTERM stops, then start-up-to-shutdown logs"
for svc in gateway detector embedder index; do stop_pod "imgsearch-$svc"; done
for svc in gateway detector embedder index; do quiet_logs "imgsearch-$svc"; done
echo "four services exited 0; no warning in their logs"
remove_run

COMPOSED=false
if [ "${COMPOSE:-1}" = 1 ]; then
  # shellcheck source=scripts/smoke-compose.sh
  . scripts/smoke-compose.sh
  compose_smoke && COMPOSED=true
fi

log "PASS"
printf '{"image_mib": %s, "services_ready_s": %s, "search_items": %s, "rebuild_swap": true, "compose": %s}\n' \
  "$IMAGE_MIB" "$READY_S" "$ITEMS_FOUND" "$COMPOSED"
