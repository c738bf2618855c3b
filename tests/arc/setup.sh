#!/usr/bin/env bash
# Installs pysiaalarm (a third-party ANSI/SIA DC-09 receiver, PyPI) into a venv of its own for
# tests/arc.rs, without touching the system's Python:
#
#   bash tests/arc/setup.sh [DIR]     # default: target/pysiaalarm; prints the venv's python
#
# Idempotent: a finished install is reused.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="$(realpath -m "${1:-target/pysiaalarm}")"
PY="$DIR/bin/python3"
if [ -x "$PY" ] && "$PY" -c 'import pysiaalarm.aio' >/dev/null 2>&1; then
    echo "$PY"
    exit 0
fi
python3 -m venv "$DIR" >&2
"$PY" -m pip install -q --disable-pip-version-check pysiaalarm==3.2.2 >&2
"$PY" -c 'import pysiaalarm.aio' >&2
echo "$PY"
