#!/usr/bin/env bash
# Creates .venv (if needed) and installs Patchbay into it. Sourced by ./patchbay and scripts/test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
extras="${1:-gui}"   # ./patchbay installs the desktop app too; `pip install patchbay` alone is the server

pick_python() {
  for py in "${PATCHBAY_PYTHON:-}" python3 python3.11 python3.12 python3.13; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  echo "Patchbay needs Python 3.11 or newer; install it and try again." >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  py="$(pick_python)"
  echo "patchbay: creating the virtual environment in $VENV (with $("$py" --version))" >&2
  "$py" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
fi

# reinstall only when the project's requirements changed since the last install
stamp="$VENV/.patchbay-installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "patchbay: installing dependencies${extras:+ (with $extras)}: the first time about 2 minutes and" \
       "290 MB; a line every 10 packages" >&2
  started=$SECONDS
  # pip's own output is long and alarming; its progress is shown as a count, its errors in full
  "$VENV/bin/python" -m pip install --progress-bar off -e "$ROOT${extras:+[$extras]}" 2>&1 | {
    n=0
    while IFS= read -r line; do
      case "$line" in
        Collecting*) n=$((n + 1)); [ $((n % 10)) -eq 0 ] && echo "patchbay:   $n packages fetched (now ${line#Collecting })" >&2 ;;
        ERROR*|error:*) echo "$line" >&2 ;;
      esac
    done
    echo "patchbay:   $n packages fetched" >&2
  }
  echo "patchbay: installed in $((SECONDS - started)) s" >&2
  touch "$stamp"
fi
