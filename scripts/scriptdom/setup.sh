#!/usr/bin/env bash
# Installs Microsoft's T-SQL parser (ScriptDom, TSql150Parser) for rowtrail's validation gate,
# idempotently: Mono from Debian, the DLL from the PyPI wheel mssql-cli==1.0.0 (never committed),
# and a small C# validator compiled against it. Output: target/scriptdom/validate.exe.
# Usage: bash scripts/scriptdom/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

out="target/scriptdom"
dll="$out/Microsoft.SqlServer.TransactSql.ScriptDom.dll"
exe="$out/validate.exe"
src="scripts/scriptdom/Validate.cs"
mkdir -p "$out"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need_apt=()
if ! command -v mcs >/dev/null 2>&1 || ! command -v mono >/dev/null 2>&1; then
    need_apt+=(mono-devel)
fi
if [ ! -s "$dll" ]; then
    command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
    command -v pip3 >/dev/null 2>&1 || command -v pip >/dev/null 2>&1 || need_apt+=(python3-pip)
fi
if ((${#need_apt[@]})); then
    echo "== installing ${need_apt[*]} (ScriptDom validation gate)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${need_apt[@]}" >/dev/null
fi

if [ ! -s "$dll" ]; then
    echo "== fetching ScriptDom from the mssql-cli 1.0.0 wheel"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    pip="$(command -v pip3 || command -v pip)"
    "$pip" download --quiet --no-deps --only-binary=:all: \
        --platform manylinux1_x86_64 --python-version 3 \
        -d "$tmp" "mssql-cli==1.0.0"
    wheel="$(ls "$tmp"/mssql_cli-1.0.0-*.whl | head -n 1)"
    python3 - "$wheel" "$dll" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
name = "mssqlcli/mssqltoolsservice/bin/Microsoft.SqlServer.TransactSql.ScriptDom.dll"
with zipfile.ZipFile(wheel) as z, open(dest, "wb") as f:
    f.write(z.read(name))
PY
fi

facades="/usr/lib/mono/4.5/Facades/netstandard.dll"
if [ ! -s "$exe" ] || [ "$src" -nt "$exe" ] || [ "$dll" -nt "$exe" ]; then
    echo "== compiling the ScriptDom validator"
    mcs -nologo -warnaserror -out:"$exe" -r:"$dll" -r:"$facades" "$src"
fi
echo "== ScriptDom validator ready: $exe"
