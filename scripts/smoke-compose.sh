# Sourced by scripts/image-smoke.sh: compose.yaml with podman-compose, as a one-machine user runs it (the demo
# index built by its one-shot service), one search through the published port, then down with its volumes.
# Needs RUN, IMAGE, ITEMS, PHOTO, WORK and the functions of smoke-common.sh and smoke-pods.sh.
compose_smoke() {
  local project=${RUN//-/_} port deadline items version
  port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  compose() {
    IMGSEARCH_IMAGE=$IMAGE IMGSEARCH_PORT=$port IMGSEARCH_DEMO_ITEMS=$ITEMS \
      timeout 300 "$COMPOSE_VENV/bin/podman-compose" -p "$project" -f compose.yaml "$@"
  }
  on_exit "podman ps -aq --filter label=io.podman.compose.project=$project | xargs -r podman rm -f; podman volume ls -q | grep ^${project}_ | xargs -r podman volume rm -f; podman network rm -f ${project}_default"
  log "compose.yaml: up (project $project, gateway on 127.0.0.1:$port)"
  compose up -d >"$WORK/compose-up.log" 2>&1 || { tail -30 "$WORK/compose-up.log" >&2; fail "podman-compose up"; }
  deadline=$((SECONDS + 300))
  until items=$(search "http://127.0.0.1:$port" "$PHOTO" 2>/dev/null) && [ "${items%% *}" -ge 1 ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      compose logs >"$WORK/compose.log" 2>&1 || true
      tail -40 "$WORK/compose.log" >&2
      fail "compose: no search answer within 300 s"
    fi
    sleep 2
  done
  read -r items version <<<"$items"
  echo "compose: search found $items items with results on the demo index $version"
  compose down -v >"$WORK/compose-down.log" 2>&1 || { tail -20 "$WORK/compose-down.log" >&2; fail "podman-compose down"; }
  [ -z "$(podman ps -aq --filter "label=io.podman.compose.project=$project")" ] || fail "compose left containers"
}
