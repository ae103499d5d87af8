# Sourced by scripts/run-example and scripts/test: make sure uv and nox are available in
# .venvs/tools (built with the standard library's venv, so a fresh machine needs only python3).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo/.venvs/tools"
export UV_COMPILE_BYTECODE=1   # imports twice as fast on machines that set PYTHONDONTWRITEBYTECODE
if [ ! -x "$tools/bin/uv" ] || [ ! -x "$tools/bin/nox" ]; then
  echo "setting up $tools (uv, nox)" >&2
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.5" "nox>=2024.10"
fi
export PATH="$tools/bin:$PATH"
