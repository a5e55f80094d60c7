#!/usr/bin/env bash
# Training image smoke test (not in CI: minutes of building). Builds Dockerfile.train on top of the serving
# image (made by scripts/image-smoke.sh first when missing) WITHOUT a Docker engine, then runs it the way the
# catalog-training Job does (UID 10001, read-only root, writable /tmp, /var/lib/imgsearch and /work/out) and
# checks that:
#   1. torch is 2.13.0 and CPU-only (no CUDA build, no nvidia-* package), no compiler, `imgsearch train --help`;
#   2. a tiny real training run (a 200-item Fashion-MNIST catalog mounted read-only, general-lite0 PULLED from
#      an http:// model store) writes model.onnx + card.json, and the card's sha256 is the model's;
#   3. and prints both image sizes.
#
# Usage: scripts/train-image-smoke.sh      (root; needs: apt-get install podman buildah runc debootstrap,
#                                           and dataset-fashion-mnist for the catalog)
# Env:   IMAGE=...          the serving image to build on (default localhost/imgsearch:smoke)
#        TRAIN_IMAGE=...    the image to build (default localhost/imgsearch-train:smoke)
#        TORCH_INDEX_URL=.. install from this index inside the build (e.g. https://download.pytorch.org/whl/cpu,
#                           needs that host reachable); unset: from a wheel folder the HOST's pip fills
#        MINUTES=0.5        training budget of the smoke run
#        KEEP=1             keep the work folder (catalog, trained model, logs) afterwards
#
# Where packages come from: by default the host's own pip (its indexes, find-links, proxy, CA) downloads
# the `[train]` pins into a folder that is mounted into the build (PIP_FIND_LINKS + PIP_NO_INDEX build args),
# so the build needs no index at all; Dockerfile.train keeps PyTorch's CPU index as its default for real use.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/imgsearch:smoke}
TRAIN_IMAGE=${TRAIN_IMAGE:-localhost/imgsearch-train:smoke}
STORE_PORT=${STORE_PORT:-18181}
MINUTES=${MINUTES:-0.5}
WORK=${WORK:-$(mktemp -d /tmp/imgsearch-train-smoke.XXXXXX)}
mkdir -p "$WORK"
CONTAINER=imgsearch-train-smoke-$$
# shellcheck source=scripts/smoke-common.sh
. scripts/smoke-common.sh
ensure_tools
private_podman_conf
size() { podman image inspect "$1" --format '{{.Size}}'; }

# --- 1. the serving image ----------------------------------------------------------------------------
if ! podman image exists "$IMAGE"; then
  log "no $IMAGE yet: building and checking it with scripts/image-smoke.sh"
  KEEP=1 COMPOSE=0 IMAGE=$IMAGE scripts/image-smoke.sh
fi

# --- 2. package sources --------------------------------------------------------------------------------
BUILD_SRC=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  BUILD_SRC=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
  log "packages: from $TORCH_INDEX_URL (torch) and pip's default index, inside the build"
else
  log "packages: the host's pip downloads the [train] pins into $WORK/wheels"
  mapfile -t PINS < <(python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["train"]))')
  pip download -q --only-binary=:all: -d "$WORK/wheels" "${PINS[@]}"
  ls "$WORK/wheels"
  BUILD_SRC=(-v "$WORK/wheels:/run/wheels:ro" --build-arg PIP_FIND_LINKS=/run/wheels --build-arg PIP_NO_INDEX=1)
fi

# --- 3. build ----------------------------------------------------------------------------------------
log "building $TRAIN_IMAGE from $IMAGE (BUILDAH_ISOLATION=chroot)"
start=$(date +%s)
podman build --network=host -f Dockerfile.train \
  --build-arg "IMGSEARCH_IMAGE=$IMAGE" \
  --build-arg PIP_CERT=/run/host-ca.crt \
  -v "$HOST_CA:/run/host-ca.crt:ro" \
  "${BUILD_SRC[@]}" \
  -t "$TRAIN_IMAGE" . 2>&1 | tee "$WORK/build.log" | grep -E '^(STEP|COMMIT|Successfully|Error)' || true
podman image exists "$TRAIN_IMAGE" || { tail -40 "$WORK/build.log"; echo "build failed" >&2; exit 1; }
build_s=$(( $(date +%s) - start ))
serving=$(size "$IMAGE")
train=$(size "$TRAIN_IMAGE")
echo "built in ${build_s}s; size $(numfmt --to=iec "$train") (serving image $(numfmt --to=iec "$serving"), +$(numfmt --to=iec $((train - serving))))"

# --- 4. static checks of the image --------------------------------------------------------------------
log "image contents"
check=$(podman run --rm "${RUN_OPTS[@]}" --entrypoint /bin/sh "$TRAIN_IMAGE" -c '
  echo "uid=$(id -u) gid=$(id -g)"
  python -c "
import importlib.metadata as md, torch
print(\"torch=\" + torch.__version__)
print(\"cuda=\" + str(torch.version.cuda) + \" available=\" + str(torch.cuda.is_available()))
print(\"nvidia=\" + str(sum(1 for d in md.distributions() if d.metadata[\"Name\"].lower().startswith(\"nvidia\"))))"
  echo "compilers=$(for c in gcc g++ cc c++ make; do command -v $c; done | wc -l)"
  imgsearch train --help >/dev/null && echo train_help=ok')
echo "$check"
grep -qx 'uid=10001 gid=10001' <<<"$check" || { echo "FAIL: not UID 10001" >&2; exit 1; }
grep -qE '^torch=2\.13\.0(\+cpu)?$' <<<"$check" || { echo "FAIL: not torch 2.13.0" >&2; exit 1; }
grep -qx 'cuda=None available=False' <<<"$check" || { echo "FAIL: not a CPU-only torch" >&2; exit 1; }
grep -qx 'nvidia=0' <<<"$check" || { echo "FAIL: nvidia packages in the image" >&2; exit 1; }
grep -qx 'compilers=0' <<<"$check" || { echo "FAIL: a compiler in the image" >&2; exit 1; }
grep -qx 'train_help=ok' <<<"$check" || { echo "FAIL: imgsearch train --help" >&2; exit 1; }

# --- 5. inputs: a catalog folder and a model store over http:// ---------------------------------------
log "catalog: 200 Fashion-MNIST items; model store: models/ served on http://127.0.0.1:$STORE_PORT"
python -m services.cli catalog fashion-mnist --out "$WORK/cat" --limit 200
start_store "$STORE_PORT"

# --- 6. train like the Job does --------------------------------------------------------------------------
# The Job's emptyDirs: the var dir (model cache), the output folder and /tmp, owned by the image's UID.
mkdir -p "$WORK/var" "$WORK/out" && chown 10001:10001 "$WORK/var" "$WORK/out"
log "run: train ${MINUTES} min at 64 px, read-only root, base model pulled over http"
start=$(date +%s)
podman run --rm --name "$CONTAINER" "${RUN_OPTS[@]}" \
  --read-only --tmpfs /tmp:rw,size=1g \
  -v "$WORK/cat:/data/cat:ro" -v "$WORK/var:/var/lib/imgsearch:rw" -v "$WORK/out:/work/out:rw" \
  "$TRAIN_IMAGE" train --catalog /data/cat/catalog.jsonl --out /work/out/smoke \
  --base-model "http://127.0.0.1:$STORE_PORT/general-lite0" \
  --minutes "$MINUTES" --image-size 64 --batch 16 --threads 2 --no-progress \
  >"$WORK/train.log" 2>&1 || { tail -30 "$WORK/train.log"; echo "FAIL: training run" >&2; exit 1; }
train_s=$(( $(date +%s) - start ))
grep -v Warning "$WORK/train.log" | grep -E 'imgsearch.train|^\{' | tail -6
ls -l "$WORK/out/smoke"
grep -q 'GET /general-lite0/model.onnx' "$WORK/store.log" || { echo "FAIL: base model not pulled over http" >&2; exit 1; }
python - "$WORK/out/smoke" <<'PY' || { echo "FAIL: model.onnx/card.json" >&2; exit 1; }
import hashlib, json, sys
from pathlib import Path
out = Path(sys.argv[1])
card = json.loads((out / "card.json").read_text())
sha = hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
assert card["sha256"] == sha, (card["sha256"], sha)
print(f"card {card['name']}: sha256 {sha[:12]} matches model.onnx ({(out / 'model.onnx').stat().st_size} bytes)")
PY
log "PASS: training image built without a Docker engine (${build_s}s, $(numfmt --to=iec "$train") vs serving $(numfmt --to=iec "$serving")); torch CPU-only; trained as UID 10001 in ${train_s}s"
