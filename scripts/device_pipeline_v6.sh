#!/bin/bash
# Usage: [INIT=assets/policies/gr00t_v8] [RECIPE=config/policy_v6.yaml] [TRAIN_MIN=8.5] [COLLECT_MIN=5] [EP=50]
#        [WORKERS=16] [GROUNDING=0.1] [BATCH=256] [PARAPHRASE=0] [SLEEP_CURVE=1] [EVAL=1] [TRAIN_EXTRA=flags] \
#        DEMOS_FROM=dir \
#        bash scripts/device_pipeline_v6.sh <workdir>
# Policy v9: INIT=assets/policies/gr00t_v8 RECIPE=config/policy_v9.yaml PARAPHRASE=0.5 GROUNDING=0.2
# TRAIN_EXTRA=--grounding-whole-task SLEEP_CURVE=0 BATCH=512 TRAIN_MIN=9 COLLECT_MIN=5.5 (docs/policy_v9_run.txt).
# Policy v8: INIT=assets/policies/gr00t_v7 RECIPE=config/policy_v8.yaml PARAPHRASE=0.5 SLEEP_CURVE=0 BATCH=512
# TRAIN_MIN=9.5 COLLECT_MIN=4.5 (adds rows: held-out phrasings, `strong` randomization).
# Policy v7: INIT=assets/policies/gr00t_v6 RECIPE=config/policy_v7.yaml SLEEP_CURVE=0 BATCH=512
# TRAIN_MIN=10 COLLECT_MIN=4.5, after `git checkout 9a59acc -- assets/policies/gr00t_v6` (docs/policy_v7_run.txt).
# Policy v6 on one GPU machine (16 cores): grounding-labelled shards (config/policy_v6.yaml) -> ONE fine-tune of
# INIT (compact_v3) with the grounding loss, while scripts/device_sleep_curve.sh runs its 3 push_block sleep
# cycles beside it (8 CPU workers, its own short GPU fine-tunes) -> evaluate 50 held-out seeds per row: language
# scenes vs mismatched instructions, plain scenes, the `train` randomization profile, `novel` objects,
# stack_blocks.
# gr00t_v6 itself is INIT=assets/policies/gr00t_v3 (`git checkout 937bdc5 -- assets/policies/gr00t_v3`). Older
# checkpoints leave the tree so that a device call carries under 64 MiB.
# DEMOS_FROM holds one LeRobot dataset per task: stack_blocks (10 demonstrations, the mix's dreams) and push_block
# (3 demonstrations, the sleep curve's dreams).
# The device machine is given back 30 s after a call returns, killing this run: wait for it inside back-to-back
# calls and copy $W/out/* to $OUT in the call that sees "done" in $W/times.
# Progress in $W/log, per-stage wall clock in $W/times. Run detached (setsid): everything is read from a
# private copy of the repo, so the working tree may be re-copied while it runs.
set -u
W=$1; TMIN=${TRAIN_MIN:-8.5}; EP=${EP:-50}; NW=${WORKERS:-16}
mkdir -p $W/eval
exec >>$W/log 2>&1
SRC=$(cd "$(dirname "$0")/.." && pwd)
rm -rf $W/repo && mkdir -p $W/repo
tar -C "$SRC" --exclude=./.venv --exclude=./outputs --exclude=./.git --exclude=./.whl --exclude=./.gl -cf - . \
  | tar -C $W/repo -xf -
cd $W/repo
export SAGE_GR00T_CONFIG=$W/repo/config SAGE_GR00T_ASSETS=$W/repo/assets
export MUJOCO_GL=egl OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
T0=$(date +%s)
stage() { echo "== $1 $(date +%T)"; echo "$1 $(( $(date +%s) - T0 ))" >> $W/times; }

stage demos
mkdir -p outputs/demos && cp -r "${DEMOS_FROM:-/nonexistent}/stack_blocks" outputs/demos/ || echo "FAILED demos"

stage collect
sage-collect-mix --recipe ${RECIPE:-config/policy_v6.yaml} --out $W/shards --workers $NW \
  --budget-minutes ${COLLECT_MIN:-5} || { stage failed-collect; exit 1; }
du -sh $W/shards; ls $W/shards | wc -l

stage train
if [ "${SLEEP_CURVE:-1}" = 1 ]; then  # issue 13's curve, beside the training (CPU-bound; short GPU fine-tunes)
  WORKERS=8 BUDGET_MIN=${SLEEP_MIN:-11} WAKE_CONTROLLER=policy DEVICE=cuda WORK=$W/sleep_work \
    bash scripts/device_sleep_curve.sh $W/sleep_curve "$DEMOS_FROM" &
  SLEEP_PID=$!
fi
OMP_NUM_THREADS=4 sage-train --shards $W/shards --preset compact_v3 --out $W/policy --steps 0 --max-minutes $TMIN \
  --batch-size ${BATCH:-256} --lr 3e-4 --warmup-steps 300 --subtask-language-prob 0.5 --final-dtype float16 \
  --grounding-weight ${GROUNDING:-0.1} --language-dropout 0.1 --paraphrase-prob ${PARAPHRASE:-0} \
  --checkpoint-every 4000 --log-every 100 ${TRAIN_EXTRA:-} \
  --init-from ${INIT:-assets/policies/gr00t_v8} > $W/train.log 2>&1 && echo "ok train" || { stage failed-train; exit 1; }

run() { # name, args...
  local name=$1; shift
  sage-eval --policy $W/policy/final --episodes $EP --out $W/eval/$name "$@" > $W/eval/$name.txt 2>&1 \
    && echo "ok $name" || echo "FAILED $name"
}
PIDS=()
bg() { run "$@" & PIDS+=($!); }
waitrows() { wait "${PIDS[@]}"; PIDS=(); }  # the rows only: the sleep curve may still be running
if [ "${EVAL:-1}" = 1 ]; then
stage eval
bg stack_blocks_none --task stack_blocks --workers 2
for t in pick_apple sort_blocks pour_water; do
  bg ${t}_lang --task $t --variant language --workers 2
  bg ${t}_mism --task $t --variant language --instruction mismatched --workers 2
done
bg sort_blocks_none --task sort_blocks --workers 2
waitrows
stage eval_plain
for t in pick_apple pour_water; do bg ${t}_none --task $t --workers 2; done
for t in pick_apple sort_blocks pour_water; do bg ${t}_train --task $t --randomization train --workers 2; done
for t in pick_apple sort_blocks pour_water; do bg ${t}_novel --task $t --variant novel --workers 2; done
waitrows
if [ "${PARAPHRASE:-0}" != 0 ]; then  # words no training used; the strong randomization profile
stage eval_words
for t in pick_apple sort_blocks pour_water stack_blocks; do bg ${t}_para --task $t --instruction paraphrase --workers 2; done
for t in pick_apple sort_blocks pour_water; do bg ${t}_strong --task $t --randomization strong --workers 2; done
waitrows
fi
fi
stage package  # what comes back: <= 8 files of <= 16 MiB ($W/out/*: copy it to $OUT in the call that waits)
[ -n "${SLEEP_PID:-}" ] && wait $SLEEP_PID  # the sleep curve, if it is still running
mkdir -p $W/out && tar -cf - -C $W/policy final | split -b 12M - $W/out/ckpt.part.
tar -czf $W/out/results.tgz -C $W eval times log train.log policy/loss.csv sleep_curve --exclude='*.mp4' \
  --exclude='*.safetensors' 2>/dev/null
stage done
echo "end $(date +%T)"
