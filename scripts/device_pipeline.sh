#!/bin/bash
# Usage: [PRESET=compact_v2] [INIT_FROM=<checkpoint>] [AMP=bf16] [LR=4e-4] bash scripts/device_pipeline.sh <workdir> <collect_min> \
#            <train_min> <eval episodes> <recipe>
# Device pipeline for a compact_v2 policy: collect -> train (or fine-tune from INIT_FROM) -> evaluate. Progress in
# $W/log. Run detached (setsid) on a GPU machine whose working tree may be re-copied while it runs: everything is
# read from a private copy of the repo.
#   assets/policies/gr00t_v2: <workdir> 5.5 9 50 config/policy_v2.yaml
#   assets/policies/gr00t_v3 (removed from the tree; `git checkout 937bdc5 -- assets/policies/gr00t_v3`): INIT_FROM=assets/policies/gr00t_v2 AMP=bf16 LR=3e-4 <workdir> 5 9 50 config/policy_v3.yaml
set -u
W=$1; CMIN=$2; TMIN=$3; EP=$4; RECIPE=$5
mkdir -p $W/eval
exec >>$W/log 2>&1
SRC=$(cd "$(dirname "$0")/.." && pwd)
rm -rf $W/repo && mkdir -p $W/repo
tar -C "$SRC" --exclude=./.venv --exclude=./outputs --exclude=./.git --exclude=./.whl -cf - . | tar -C $W/repo -xf -
cd $W/repo
export PYTHONPATH=$W/repo/exts/sage_gr00t:$W/repo/tasks${PYTHONPATH:+:$PYTHONPATH}
export SAGE_GR00T_CONFIG=$W/repo/config SAGE_GR00T_ASSETS=$W/repo/assets
echo "start $(date +%T)"
export MUJOCO_GL=egl OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
stage() { echo "== $1 $(date +%T)"; echo "$1" > $W/stage; }
stage collect
sage-collect-mix --recipe $RECIPE --out $W/shards --workers ${WORKERS:-15} --budget-minutes $CMIN || { stage failed-collect; exit 1; }
du -sh $W/shards
stage train
train() { # amp
  OMP_NUM_THREADS=8 sage-train --shards $W/shards --preset ${PRESET:-compact_v2} --out $W/policy --steps 0 --max-minutes $TMIN \
    --batch-size ${BATCH:-256} --lr ${LR:-4e-4} --warmup-steps 500 --subtask-language-prob 0.5 --final-dtype float16 \
    --checkpoint-every 3000 --log-every 100 --amp $1 ${INIT_FROM:+--init-from $INIT_FROM}
}
# bf16 is checked only here, on the GPU: if it fails before the first checkpoint, train again in fp32.
train ${AMP:-none} || { [ ! -e $W/policy/train_state.pt ] && [ "${AMP:-none}" != none ] && train none; } \
  || { stage failed-train; exit 1; }
stage eval
P=$W/policy/final
run() { # name, args...
  local name=$1; shift
  sage-eval --policy $P --episodes $EP --out $W/eval/$name "$@" > $W/eval/$name.txt 2>&1 && echo "ok $name" || echo "FAILED $name"
}
for t in pour_water sort_blocks pick_apple; do
  run ${t}_none --task $t --workers 4 &
  run ${t}_rand --task $t --randomization train --workers 4 &
  run ${t}_novel --task $t --variant novel --workers 3 &
  run ${t}_lang --task $t --variant language --workers 3 &
  run ${t}_mism --task $t --variant language --instruction mismatched --workers 3 &
  [ $t = sort_blocks ] && wait
done
wait
stage done
echo "end $(date +%T)"
