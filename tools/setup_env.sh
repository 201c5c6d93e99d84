#!/usr/bin/env bash
# Make sure .venv/ exists with the pinned environment, installed only from this project's files.
# Reuses an existing .venv in seconds when its stamp matches the pins. Offline-capable: only the Python
# package registry (and PyTorch's local wheels) are used.
#
# Environment:
#   FOCUS_VENV          where to build the environment (default: .venv in the project root)
#   FOCUS_PYTHON        interpreter used to create it (default: python3)
#   FOCUS_DETECTRON2    a pip requirement or path for an official detectron2 (e.g. a source checkout);
#                       default: an importable official detectron2, else the sal-detectron2 wheel route
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FOCUS_VENV:-$ROOT/.venv}"
PY="${FOCUS_PYTHON:-python3}"
PINS="$ROOT/requirements/pinned.txt"
STAMP="$VENV/.focus-env-stamp"
want="$(cat "$PINS" "$ROOT/setup.py" "$0" | sha256sum | cut -d' ' -f1) ${FOCUS_DETECTRON2:-}"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c "import focus, detectron2" 2>/dev/null; then
  exit 0
fi

start=$(date +%s)
echo "[setup] building environment in $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="pip_quiet $VENV/bin/python -m pip --disable-pip-version-check"
# pip warns about every absent local index folder of this machine's pip.conf: keep the log readable
pip_quiet() { local rc=0; "$@" > >(grep -v "is ignored: it is neither a file nor a directory" >&2) 2>&1 || rc=$?; return $rc; }
$PIP install -q --upgrade "pip>=24" "setuptools>=70" wheel
$PIP install -q -r "$PINS"
# sam2 (SAM 2 pseudo labels, optional; see requirements/pinned.txt) is a source package: built against our torch,
# without its CUDA extension, its dependencies being pinned above
SAM2_BUILD_CUDA=0 $PIP install -q --no-deps --no-build-isolation "$(sed -n 's/^# *\(sam2==[^ ]*\).*/\1/p' "$PINS")"

SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ -n "${FOCUS_DETECTRON2:-}" ]; then
  echo "[setup] detectron2 from FOCUS_DETECTRON2=$FOCUS_DETECTRON2"
  $PIP install -q --no-build-isolation "$FOCUS_DETECTRON2"
elif "$VENV/bin/python" -c "import detectron2" 2>/dev/null; then
  echo "[setup] detectron2 already importable: $("$VENV/bin/python" -c 'import detectron2; print(detectron2.__file__)')"
else
  # The registry has detectron2's pure-Python sources (2024 main) only as sal-detectron2, tagged for
  # Python 3.10; its compiled _C is for another Python, never loaded, and removed.
  echo "[setup] detectron2 from the sal-detectron2 wheel (pure-Python sources)"
  tmp="$(mktemp -d)"
  $PIP install -q --no-deps --python-version 3.10 --only-binary=:all: --target "$tmp" sal-detectron2==0.7.2
  rm -f "$tmp"/detectron2/_C*.so
  cp -r "$tmp"/detectron2 "$tmp"/sal_detectron2-*.dist-info "$SITE"/
  rm -rf "$tmp"
fi

$PIP install -q --no-deps --no-build-isolation -e "$ROOT"
"$VENV/bin/python" -c "import focus, detectron2; print('[setup] focus', focus.__version__, '| detectron2', detectron2.__version__, detectron2.__file__)"
echo "$want" > "$STAMP"
echo "[setup] done in $(( $(date +%s) - start )) s"
