#!/usr/bin/env bash
# Install everything the tests need, then lint, type-check and run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -k topics).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests run: the broker, the clients the demo test pastes verbatim,
# systemd-analyze (the unit's security rating), Node.js (the MQTT.js tests), Chromium (the
# web page's browser tests, driven by playwright-core from tests/node) and nginx (the README's
# reverse-proxy setup, tested as written), and the other brokers of tests/brokers.py (NATS,
# RabbitMQ, ejabberd: each test starts private instances on free loopback ports, never these
# packages' system services).
missing=""
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing="$missing python3-venv"
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
command -v mosquitto_rr >/dev/null 2>&1 || missing="$missing mosquitto-clients"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -x /usr/sbin/nginx ] || missing="$missing nginx"
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing="$missing nats-server"
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing="$missing rabbitmq-server"
[ -x /usr/sbin/ejabberdctl ] || missing="$missing ejabberd"
if [ -n "$missing" ]; then
  echo "== installing$missing from the Debian packages"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # The ejabberd package would start a system ejabberd listening on every interface (XMPP
  # 5222/5223/5269, HTTP 5280/5443, STUN 3478, and mod_mqtt on 1883, Mosquitto's port): deny
  # that start during the install, unless a policy-rc.d is already in place.
  policy=""
  case "$missing" in *ejabberd*)
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      policy=/usr/sbin/policy-rc.d
      # shellcheck disable=SC2016
      printf '#!/bin/sh\nfor a; do [ "$a" = ejabberd ] && exit 101; done\nexit 0\n' \
        | $sudo tee "$policy" >/dev/null
      $sudo chmod 755 "$policy"
    fi
  esac
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
  [ -z "$policy" ] || $sudo rm -f "$policy"
  case "$missing" in *ejabberd*)
    # whatever started anyway is stopped, and the service does not come back at boot
    if [ -n "$(ss -Hltn 'sport = :5222' 2>/dev/null)" ]; then
      $sudo ejabberdctl stop >/dev/null 2>&1 || true
    fi
    if [ -d /run/systemd/system ]; then $sudo systemctl disable --now ejabberd >/dev/null 2>&1 || true; fi
    $sudo update-rc.d ejabberd disable >/dev/null 2>&1 || true
  esac
fi

if [ ! -f tests/node/node_modules/.package-lock.json ] \
    || [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; then
  echo "== installing the MQTT.js test client and playwright-core (npm ci in tests/node)"
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== installing Python dependencies into .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

echo "== installing the vendors' SDKs (test witnesses) into .venv-sdk"
[ -x .venv-sdk/bin/python ] || python3 -m venv .venv-sdk
.venv-sdk/bin/python -m pip install -q --disable-pip-version-check -r tests/witness/requirements.txt
.venv-sdk/bin/python -m pip install -q --disable-pip-version-check --no-deps aqara-msg-push==1.0.2

echo "== installing amqtt (a test broker; it pins websockets==15.0.1) into .venv-amqtt"
[ -x .venv-amqtt/bin/python ] || python3 -m venv .venv-amqtt
.venv-amqtt/bin/python -m pip install -q --disable-pip-version-check amqtt==0.12.1

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== import contracts (the layering in ARCHITECTURE.md)"
.venv/bin/lint-imports
echo "== pytest"
.venv/bin/python -m pytest -q "$@"
