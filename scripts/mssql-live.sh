#!/usr/bin/env bash
# The SQL Server live suite in one command, for anyone with Docker: starts the official SQL
# Server image on a free local port with a generated SA password, waits (bounded) until it
# accepts a login, runs the ignored live tests against it, and removes the container however
# the script ends.
#
# Usage: bash scripts/mssql-live.sh [extra arguments for the test binary, e.g. a test name]
#   MSSQL_IMAGE        the image (default mcr.microsoft.com/mssql/server:2022-latest)
#   MSSQL_WAIT_SECONDS how long to wait for the first login (default 180)
#   MSSQL_TEST_THREADS tests run at once (default 2)
#
# The password never appears on a command line (where `ps` would show it): it reaches the
# container and sqlcmd through a 0600 env file, and the tests through the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

image="${MSSQL_IMAGE:-mcr.microsoft.com/mssql/server:2022-latest}"
wait_seconds="${MSSQL_WAIT_SECONDS:-180}"
threads="${MSSQL_TEST_THREADS:-2}"

if ! command -v docker >/dev/null 2>&1; then
    echo "mssql-live: docker is not installed (or not on PATH)" >&2
    exit 2
fi

name="rowtrail-mssql-live-$$-${RANDOM}"
umask 077
env_file="$(mktemp "${TMPDIR:-/tmp}/rowtrail-mssql-live.XXXXXX")"
chmod 600 "$env_file"

cleanup() {
    docker rm -f "$name" >/dev/null 2>&1 || true
    rm -f "$env_file"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# SQL Server's policy: at least 8 characters from three of upper, lower, digits, symbols.
random="$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
password="Rt-${random:0:24}-9a"
{
    echo "ACCEPT_EULA=Y"
    echo "MSSQL_SA_PASSWORD=${password}"
    echo "SQLCMDPASSWORD=${password}"
} >"$env_file"

echo "== starting ${image} as ${name}"
# Port 0 on loopback: Docker picks a free port, read back below.
docker run -d --name "$name" --env-file "$env_file" -p 127.0.0.1::1433 "$image" >/dev/null
port="$(docker port "$name" 1433/tcp | head -n 1 | sed 's/.*://')"
if [ -z "$port" ]; then
    echo "mssql-live: cannot tell which port the container listens on" >&2
    exit 1
fi

echo "== waiting up to ${wait_seconds} s for a login on 127.0.0.1,${port}"
deadline=$((SECONDS + wait_seconds))
ready=""
while [ "$SECONDS" -lt "$deadline" ]; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" != "true" ]; then
        echo "mssql-live: the container stopped; its log:" >&2
        docker logs "$name" 2>&1 | tail -n 40 >&2
        exit 1
    fi
    # sqlcmd reads the password from SQLCMDPASSWORD (the env file), never from its arguments.
    for sqlcmd in /opt/mssql-tools18/bin/sqlcmd /opt/mssql-tools/bin/sqlcmd; do
        if docker exec --env-file "$env_file" "$name" "$sqlcmd" -C -S localhost -U sa \
            -b -Q "SET NOCOUNT ON; SELECT 1" >/dev/null 2>&1; then
            ready=yes
            break 2
        fi
    done
    sleep 2
done
if [ -z "$ready" ]; then
    echo "mssql-live: no login within ${wait_seconds} s; the container's log:" >&2
    docker logs "$name" 2>&1 | tail -n 40 >&2
    exit 1
fi

echo "== running the live suite"
ROWTRAIL_MSSQL_URL="Server=tcp:127.0.0.1,${port};User ID=sa;Password=${password}"
export ROWTRAIL_MSSQL_URL
cargo test -p rowtrail --test mssql_live -- --ignored --test-threads "$threads" "$@"
