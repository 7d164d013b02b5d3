#!/usr/bin/env bash
# Installs the peer the capture benchmark compares rowtrail with, idempotently: sqlite-history 0.1
# (PyPI) in a private virtual environment, target/bench-venv. `rowtrail-bench app` runs its
# Python there to generate the peer's own trigger SQL for the benchmark's table.
# Usage: bash scripts/bench/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="target/bench-venv"
if ! command -v python3 >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        python3 python3-venv >/dev/null
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "== making $venv"
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import sqlite_history" >/dev/null 2>&1; then
    echo "== installing sqlite-history 0.1 into $venv"
    "$venv/bin/pip" install --quiet "sqlite-history==0.1"
fi
echo "== peer ready: $venv/bin/python (sqlite-history $("$venv/bin/pip" show sqlite-history | sed -n 's/^Version: //p'))"
