#!/usr/bin/env bash
# Install everything the tests need, then lint, type-check and run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -k topics).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  echo "== installing Mosquitto from the Debian packages"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "== installing Node.js and npm from the Debian packages (MQTT.js tests)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -f tests/node/node_modules/.package-lock.json ] \
    || [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; then
  echo "== installing the MQTT.js test client (npm ci in tests/node)"
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== installing Python dependencies into .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest -q "$@"
