# Shared by scripts/image-smoke.sh and scripts/train-image-smoke.sh (sourced, not run): the podman settings
# this sandbox needs, cleanup of what a smoke run started, and an http:// model store over models/.
# The caller sets WORK (its work folder) and CONTAINER (the name of the container it runs) first.
export BUILDAH_ISOLATION=chroot
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
RUN_OPTS=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 --network=host)
STORE_PID=""

log() { printf '\n== %s\n' "$*"; }
cleanup() {
  set +e
  podman rm -f "$CONTAINER" >/dev/null 2>&1
  [ -n "$STORE_PID" ] && kill "$STORE_PID" 2>/dev/null
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

for tool in podman buildah runc; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install podman buildah runc debootstrap" >&2; exit 2; }
done

# start_store PORT: publish models/ to $WORK/store and serve that folder on http://127.0.0.1:PORT
# (log: $WORK/store.log, where the GET lines prove what was pulled).
start_store() {
  mkdir -p "$WORK/store"
  python -m services.cli models publish --to "file://$WORK/store" >/dev/null
  python -m http.server "$1" --bind 127.0.0.1 --directory "$WORK/store" >"$WORK/store.log" 2>&1 &
  STORE_PID=$!
}
