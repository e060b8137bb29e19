#!/usr/bin/env bash
# Installs the hourly DAG's runtime, nothing twice: a virtual environment in
# .venv-airflow with hoststream's `airflow` extra (hoststream[warehouse],
# apache-airflow and its Google provider, about 2 GB), and pytest and aiosmtpd (the
# alert test's SMTP server) for tests/dags.
# Kept apart from .venv so the main environment stays small and its resolver
# never meets Airflow's pins.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv-airflow

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $("$PYTHON" --version)..."
    "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when the dependencies changed since the last install.
stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/bootstrap_airflow.sh -nt "$stamp" ]; then
    echo "installing Airflow, its Google provider and hoststream[airflow] into $VENV (about 2 GB)..."
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[airflow]' 'pytest>=8.0' 'pytest-timeout>=2.3' 'aiosmtpd>=1.4'
    touch "$stamp"
fi
