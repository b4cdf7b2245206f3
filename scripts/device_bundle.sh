#!/bin/bash
# Usage: bash scripts/device_bundle.sh   (on the development machine, after scripts/setup.sh; needs pip's index)
# Builds what a device call carries (`carry: [".whl", ".gl"]`, both git-excluded): the wheels the device image
# lacks (mujoco trimmed of its viewer and studio, mink and its solvers, gymnasium, tyro, this project built from
# HEAD), EGL loader packages, the recorded demonstrations the device scripts dream from
# (.whl/demos/{stack_blocks,push_block}) and .whl/dev_setup.sh. On the device: `source .whl/dev_setup.sh`.
# The working tree plus both folders must stay under the 64 MiB a call carries (this prints the total).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || printf '/.whl/\n/.gl/\n' >> .git/info/exclude
mkdir -p .whl .gl
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
# One version each (two of one package stop the install there). typing_extensions: tyro needs a newer one.
for p in mujoco==3.12.0 mink==1.3.0 daqp qpsolvers gymnasium farama-notifications tyro docstring-parser typeguard \
         typing_extensions pyopengl; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS \
    -d .whl "$p" 2>&1 | grep -v '^WARNING: Location' || true
done
# mujoco: drop what headless rendering never loads (studio, viewer, headers: ~12 MB of the 20 MB wheel).
wheel=$(ls .whl/mujoco-3.12.0-*.whl)
# (The listing is read whole first: grep -q would close the pipe early, and pipefail would read that as "absent".)
if grep -q 'mujoco/experimental/' <<<"$(unzip -l "$wheel")"; then
  tmp=$(mktemp -d)
  (cd "$tmp" && unzip -q "$OLDPWD/$wheel" && rm -rf mujoco/experimental mujoco/_simulate*.so mujoco/include \
     mujoco/viewer.py && python3 - <<'PY'
import csv, glob, os
record = glob.glob("*.dist-info/RECORD")[0]
rows = [r for r in csv.reader(open(record)) if os.path.exists(r[0])]
csv.writer(open(record, "w", newline="")).writerows(rows)
PY
   rm "$OLDPWD/$wheel" && zip -q -r -9 "$OLDPWD/$wheel" .)
  rm -rf "$tmp"
fi
# This project, from the committed tree (the device runs the wheel's code, not the working tree's).
src=$(mktemp -d) && git archive HEAD | tar -C "$src" -x
rm -f .whl/sage_gr00t-*.whl && .venv/bin/pip wheel -q --no-deps --no-build-isolation -w .whl "$src" && rm -rf "$src"
# EGL loaders for MuJoCo's headless rendering there.
mkdir -p /tmp/amd64/partial
apt_o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
ls .gl/libegl1_*.deb >/dev/null 2>&1 || { apt-get $apt_o update -qq && \
  (cd .gl && apt-get $apt_o download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2); }
# Demonstrations: 10 of stack_blocks (the mix's dreams), 3 of push_block (the sleep curve's), scripted expert.
export MUJOCO_GL=${MUJOCO_GL:-egl}
[ -f .whl/demos/stack_blocks/meta/sage_episodes.jsonl ] || \
  .venv/bin/sage-collect --task stack_blocks --episodes 10 --out .whl/demos/stack_blocks --storage image
[ -f .whl/demos/push_block/meta/sage_episodes.jsonl ] || \
  .venv/bin/sage-collect --task push_block --episodes 3 --out .whl/demos/push_block --storage image --image-size 128
cat > .whl/dev_setup.sh <<'SH'
# source .whl/dev_setup.sh on the device machine: the carried wheels (into /tmp/site) and the EGL loaders.
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
# Once per machine: a second install into the same --target fails, and a call may source this again.
[ -x /tmp/site/bin/sage-eval ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
f=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json; [ -f $f ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$f
SH
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
carried=$(du -sb .whl .gl | awk '{s += $1} END {print s}')
echo "carry: tracked tree $((tracked / 1048576)) MiB + .whl/.gl $((carried / 1048576)) MiB (limit 64 MiB)"
