#!/usr/bin/env bash
# Installs everything TinyFleet needs on a fresh Debian machine: system packages
# (only the missing ones), a Python venv with the project, and the npm packages
# for the MicroPython WebAssembly runner. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(mosquitto mosquitto-clients gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
      espeak-ng sox chromium chromium-driver docker-compose)
missing=()
for p in "${DEBS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages; run as root:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'

if [[ -f node_firmware/wasm/package-lock.json ]]; then
  (cd node_firmware/wasm && npm ci --silent --no-audit --no-fund)
else
  (cd node_firmware/wasm && npm install --silent --no-audit --no-fund)
fi
echo "tinyfleet: environment ready (.venv)"
