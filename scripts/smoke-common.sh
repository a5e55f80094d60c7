# Shared by scripts/image-smoke.sh and scripts/train-image-smoke.sh (sourced, not run): the tools and podman
# settings a fresh Debian machine needs, the base image made without a registry, the image build, cleanup of
# what a smoke run started, and an http:// model store over models/ on the host.
# The caller sets WORK (its work folder) and CONTAINER (the name of the container it runs, or "") first.
export BUILDAH_ISOLATION=chroot
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
RUN_OPTS=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 --network=host)
STORE_PID=""
# What survives between runs on one machine: the Debian base image (made once a day at most).
BASE_CACHE=${BASE_CACHE:-localhost/imgsearch-smoke-base:bookworm-$(date -u +%Y%m%d)}
CLEANUPS=()
PODMAN_COMPOSE_VERSION=1.6.0
COMPOSE_VENV=${XDG_CACHE_HOME:-$HOME/.cache}/imgsearch-smoke/podman-compose-$PODMAN_COMPOSE_VERSION

log() { printf '\n== %s  [%ss]\n' "$*" "$SECONDS"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# on_exit CMD: run CMD at exit (last registered first), whatever ends the script.
on_exit() { CLEANUPS=("$*" "${CLEANUPS[@]}"); }
cleanup() {
  set +e
  local c
  for c in "${CLEANUPS[@]}"; do eval "$c" >/dev/null 2>&1; done
  [ -n "${CONTAINER:-}" ] && podman rm -f "$CONTAINER" >/dev/null 2>&1
  [ -n "$STORE_PID" ] && kill "$STORE_PID" 2>/dev/null
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'echo "FAIL: stopped by a signal (the SMOKE_TIMEOUT_S limit, or Ctrl-C); cleaning up" >&2; exit 143' TERM INT HUP

# The tools, installed when missing (CI machines start bare). crun cannot run containers on this cgroup
# mode: runc is the runtime; netavark needs iptables. podman-compose comes from PyPI (Debian's 1.0.3 is older
# than the compose files it should read).
ensure_tools() {
  local pkgs=(podman buildah mmdebstrap runc netavark aardvark-dns iptables uidmap) missing=() p sudo=""
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
      -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
  fi
  # Its own virtual environment (kept as a cache): the tested Python environment stays as constraints.txt says.
  if [ "${1:-}" = compose ] && [ ! -x "$COMPOSE_VENV/bin/podman-compose" ]; then
    log "installing podman-compose $PODMAN_COMPOSE_VERSION into $COMPOSE_VENV"
    rm -rf "$COMPOSE_VENV"
    python -m venv "$COMPOSE_VENV"
    "$COMPOSE_VENV/bin/pip" install -q --disable-pip-version-check "podman-compose==$PODMAN_COMPOSE_VERSION"
  fi
}

# A private containers.conf: the machine's /etc/containers is never edited. Default ulimits this sandbox
# allows (no CAP_SYS_RESOURCE: podman's defaults would ask for more), netavark (no CNI plugins here) and
# events in a file (no journald nor syslog on a CI machine).
private_podman_conf() {
  export CONTAINERS_CONF="$WORK/containers.conf"
  cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
[engine]
runtime = "runc"
events_logger = "file"
[network]
network_backend = "netavark"
EOF
}

# ensure_base: BASE_IMAGE from the environment, the Dockerfile's pinned base when a registry answers, else a
# Debian bookworm rootfs with python3 made by mmdebstrap from the machine's apt mirror (kept as BASE_CACHE).
ensure_base() {
  [ -n "${BASE_IMAGE:-}" ] && return
  local pinned
  pinned=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)
  if podman image exists "$pinned" || timeout 20 podman pull -q "docker.io/library/$pinned" >/dev/null 2>&1; then
    BASE_IMAGE=$pinned
    return
  fi
  BASE_IMAGE=$BASE_CACHE
  # Yesterday's bases go: the cache holds one, refreshed daily with the mirror's security updates.
  podman images --format '{{.Repository}}:{{.Tag}}' | grep "^${BASE_CACHE%:*}:" | grep -vx "$BASE_CACHE" \
    | xargs -r podman rmi -f >/dev/null 2>&1 || true
  podman image exists "$BASE_IMAGE" && return
  log "no registry: making $BASE_IMAGE with mmdebstrap"
  # The path filters are debian:bookworm-slim's (python:*-slim's base): no docs, man pages or translations.
  timeout 600 mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    --aptopt='Acquire::Retries "3"' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' bookworm "$WORK/rootfs.tar" >"$WORK/mmdebstrap.log" 2>&1 \
    || { tail -20 "$WORK/mmdebstrap.log"; fail "mmdebstrap"; }
  podman import -q "$WORK/rootfs.tar" "$BASE_IMAGE" >/dev/null
  rm -f "$WORK/rootfs.tar"
}

# build_image IMAGE: the Dockerfile as docs/deploy.md builds it (podman's default OCI format: the Dockerfile
# uses nothing that format drops, SHELL or HEALTHCHECK), pip through the host's CA bundle. Prints the build's
# warnings; fails with the log's tail.
build_image() {
  # The layer cache makes the next build fast; what is older than a day (yesterday's sources) goes.
  podman image prune -f --filter until=24h >/dev/null 2>&1 || true
  podman build --network=host \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg PIP_CERT=/run/host-ca.crt \
    -v "$HOST_CA:/run/host-ca.crt:ro" \
    -t "$1" . >"$WORK/build.log" 2>&1 || true
  grep -E '^(STEP|COMMIT)' "$WORK/build.log" | cut -c1-110 || true
  podman image exists "$1" || { tail -40 "$WORK/build.log"; fail "podman build"; }
  grep -iE 'level=warn|^WARN|\[Warning\]' "$WORK/build.log" | sed 's/^/build warning: /' || true
}

# start_store PORT: publish models/ to $WORK/store and serve that folder on http://127.0.0.1:PORT
# (log: $WORK/store.log, where the GET lines prove what was pulled).
start_store() {
  mkdir -p "$WORK/store"
  python -m services.cli models publish --to "file://$WORK/store" >/dev/null
  python -m http.server "$1" --bind 127.0.0.1 --directory "$WORK/store" >"$WORK/store.log" 2>&1 &
  STORE_PID=$!
}
