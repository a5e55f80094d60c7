# Sourced by scripts/image-smoke.sh: run the image's containers as k8s/base runs its pods (flags from the
# manifests, scripts/pod_flags.py), find them, wait for them, check their logs. Needs RUN, NET, IMAGE, WORK.
LABEL="imgsearch.smoke=$RUN"

# run_pod NAME WORKLOAD [EXTRA PODMAN FLAGS... --] [CONFIGMAP OVERRIDES KEY=VALUE...]: a detached container on
# NET, reachable as NAME (the Service's DNS name), everything else from the workload's manifest.
run_pod() {
  local name=$1 workload=$2 extra=() flags=() split
  shift 2
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do extra+=("$1"); shift; done
  [ "$#" -gt 0 ] && shift
  mapfile -t flags < <(python scripts/pod_flags.py "$workload" "$RUN" "$@")
  [ "${#flags[@]}" -gt 0 ] || fail "no flags for $workload"
  for split in "${!flags[@]}"; do [ "${flags[$split]}" = -- ] && break; done
  podman run -d --name "$RUN-$name" --label "$LABEL" --network "$NET" --network-alias "$name" \
    "${extra[@]}" "${flags[@]:0:$split}" "$IMAGE" "${flags[@]:$((split + 1))}" >/dev/null
}

pod_ip() { podman inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$RUN-$1"; }

# wait_ready NAME PORT SECONDS: /readyz answers 200; fails when the container stops, logs an error or runs out of time.
wait_ready() {
  local url deadline=$((SECONDS + $3))
  url="http://$(pod_ip "$1"):$2/readyz"
  while [ "$SECONDS" -lt "$deadline" ]; do
    curl -fsS -m 2 -o /dev/null "$url" 2>/dev/null && return 0
    [ "$(podman inspect -f '{{.State.Running}}' "$RUN-$1")" = true ] || break
    # A healthy start logs no error: the first one fails the run now rather than at the deadline.
    podman logs "$RUN-$1" 2>&1 | grep -qE ' (ERROR|CRITICAL) |^Traceback' && break
    sleep 0.5
  done
  podman logs --tail 30 "$RUN-$1" >&2 || true
  fail "$1: $url not ready within $3 s"
}

# run_job NAME WORKLOAD [as run_pod]: run to completion (bounded), fail with its log unless it exits 0.
run_job() {
  local name=$1 code
  run_pod "$@"
  code=$(timeout 600 podman wait "$RUN-$name" || echo timeout)
  podman logs "$RUN-$name" >"$WORK/$name.log" 2>&1 || true
  [ "$code" = 0 ] || { tail -30 "$WORK/$name.log" >&2; fail "$name exited $code"; }
  podman rm "$RUN-$name" >/dev/null
}

# store_volume NAME: an empty named volume owned by the image's UID (a pod's fsGroup does the same).
store_volume() {
  podman volume create --label "$LABEL" "$RUN-$1" >/dev/null
  chown 10001:10001 "$(podman volume inspect -f '{{.Mountpoint}}' "$RUN-$1")"
}

# quiet_logs NAME: no warning, error or traceback in the container's whole log (start-up to shutdown).
quiet_logs() {
  local noisy
  noisy=$(podman logs "$RUN-$1" 2>&1 | grep -E ' (WARNING|ERROR|CRITICAL) |Traceback|\[W:onnxruntime|[Ww]arning:' || true)
  [ -z "$noisy" ] || { echo "$noisy" >&2; fail "$1: warnings in its log"; }
}

# stop_pod NAME: SIGTERM (podman stop), then the exit code must be 0.
stop_pod() {
  podman stop -t 30 "$RUN-$1" >/dev/null
  local code
  code=$(podman inspect -f '{{.State.ExitCode}}' "$RUN-$1")
  [ "$code" = 0 ] || { podman logs --tail 20 "$RUN-$1" >&2; fail "$1 exited $code after SIGTERM"; }
}

# remove_run: every container, volume and network of this run (labels), whatever state they are in.
remove_run() {
  local ids
  ids=$(podman ps -aq --filter "label=$LABEL")
  [ -z "$ids" ] || podman rm -f -t 5 $ids >/dev/null 2>&1
  ids=$(podman volume ls -q --filter "label=$LABEL")
  [ -z "$ids" ] || podman volume rm -f $ids >/dev/null 2>&1
  podman volume ls -q | grep "^$RUN-" | xargs -r podman volume rm -f >/dev/null 2>&1
  podman network rm -f "$NET" >/dev/null 2>&1 || true
}

# search URL PHOTO: POST the photo, print "<items with results> <index_version>".
search() {
  curl -fsS -m 30 -F "image=@$2" "$1/v1/search?k=5" | python -c '
import json, sys
answer = json.load(sys.stdin)
print(sum(1 for item in answer["items"] if item["results"]), answer["index_version"])'
}
