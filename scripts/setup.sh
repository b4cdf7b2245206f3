#!/usr/bin/env bash
# Set up SAGE-GR00T on a fresh Linux machine: offscreen-rendering libraries (apt), a Python 3.12
# venv in .venv, and the project with its pinned dependencies. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  # EGL/OSMesa: offscreen MuJoCo rendering. Chromium + driver: the web panel's browser test.
  if ! dpkg -s libegl1 libgl1-mesa-dri libosmesa6 chromium chromium-driver >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      libegl-mesa0 libegl1 libgl1-mesa-dri libgles2 libosmesa6 ffmpeg chromium chromium-driver >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  # Isaac Lab 3.0, Kit and LeRobot >= 0.6 need Python 3.12 (pyenv on these machines has 3.12.1).
  PY=""
  for candidate in python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python3.12"; do
    if PYENV_VERSION=3.12.1 "$candidate" --version >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
  if [ -z "$PY" ]; then
    echo "Python 3.12 not found: install it (e.g. 'pyenv install 3.12') and re-run." >&2
    exit 1
  fi
  PYENV_VERSION=3.12.1 "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,kit,panel,isaaclab,robot]"
echo "SAGE-GR00T is set up in .venv ($(.venv/bin/python --version))."
