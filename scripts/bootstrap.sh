#!/usr/bin/env bash
# Installs what hoststream needs on this machine, and nothing twice:
#   - Debian packages: a JRE and Maven (the Kafka broker), PostgreSQL's server binaries,
#     chromium (the dashboard's browser test);
#   - a virtual environment in .venv with hoststream and its dev extra (every role's extras);
#   - the Kafka broker's jars, from Maven Central.
# pip and Maven reuse their caches (~/.cache/pip, ~/.m2) when present.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
# The dashboard's browser test drives it through playwright (which cannot fetch its own here).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "hoststream needs ${missing[*]}: run  sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "installing ${missing[*]} with apt-get..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "hoststream needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $("$PYTHON" --version)..."
    "$PYTHON" -m venv .venv
fi
# Reinstall only when the dependencies changed since the last install.
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo "installing hoststream and its dependencies into .venv..."
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch .venv/.installed
fi

.venv/bin/hoststream stack install
