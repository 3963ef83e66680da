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

# The demo test pastes the banner's mosquitto_sub/pub/rr commands; the unit test runs
# systemd-analyze security. Install what is missing (Mosquitto may be there without its clients).
missing=""
command -v mosquitto_rr >/dev/null 2>&1 || missing="$missing mosquitto-clients"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
if [ -n "$missing" ]; then
  echo "== installing$missing from the Debian packages"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi

echo "== installing Python dependencies into .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

echo "== installing the vendors' SDKs (test witnesses) into .venv-sdk"
[ -x .venv-sdk/bin/python ] || python3 -m venv .venv-sdk
.venv-sdk/bin/python -m pip install -q --disable-pip-version-check -r tests/witness/requirements.txt
.venv-sdk/bin/python -m pip install -q --disable-pip-version-check --no-deps aqara-msg-push==1.0.2

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest -q "$@"
