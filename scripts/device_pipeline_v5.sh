#!/bin/bash
# Usage: [TRAIN_MIN=11] [COLLECT_MIN=5.5] [EP=50] [WORKERS=16] [GROUNDING=0.1] [DEMOS_FROM=dir] \
#        bash scripts/device_pipeline_v5.sh <workdir>
# Policy v5 on one GPU machine: eval throughput at 1 / 16 workers -> grounding-labelled shards
# (config/policy_v5.yaml: counterfactual language scenes, the v3 mix, stack_blocks dreams from 10 recorded
# demonstrations) -> ONE fine-tune of gr00t_v3 (compact_v3) with the grounding loss, alone on the GPU ->
# evaluate (language scenes vs mismatched instructions, plain scenes, stack_blocks).
# The device machine is given back 30 s after a call returns, killing this run: wait for it inside back-to-back
# calls (`sleep 540; cat $W/times`) and copy $W/out/* to $OUT in the same call that sees "done".
# Progress in $W/log, per-stage wall clock in $W/times. Run detached (setsid): everything is read from a
# private copy of the repo, so the working tree may be re-copied while it runs.
set -u
W=$1; TMIN=${TRAIN_MIN:-11}; EP=${EP:-50}; NW=${WORKERS:-16}
mkdir -p $W/eval $W/bench
exec >>$W/log 2>&1
SRC=$(cd "$(dirname "$0")/.." && pwd)
rm -rf $W/repo && mkdir -p $W/repo
tar -C "$SRC" --exclude=./.venv --exclude=./outputs --exclude=./.git --exclude=./.whl --exclude=./.gl -cf - . \
  | tar -C $W/repo -xf -
cd $W/repo
export SAGE_GR00T_CONFIG=$W/repo/config SAGE_GR00T_ASSETS=$W/repo/assets
export MUJOCO_GL=egl OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
T0=$(date +%s)
stage() { echo "== $1 $(date +%T)"; echo "$1" > $W/stage; echo "$1 $(( $(date +%s) - T0 ))" >> $W/times; }

if [ "${THROUGHPUT:-1}" = 1 ]; then
  stage throughput  # sage-eval's fan-out on an otherwise idle machine (issue 15: 16 workers)
  timeout 150 sage-bench eval-throughput --workers 1 16 --episodes 96 --policy expert \
    > $W/bench/eval_throughput_16.txt 2>&1 || echo "FAILED throughput"
fi

stage demos
for t in stack_blocks; do
  mkdir -p outputs/demos && cp -r "${DEMOS_FROM:-/nonexistent}/$t" outputs/demos/ && echo "demos $t from $DEMOS_FROM" \
    || echo "FAILED demos $t"
done

stage collect
sage-collect-mix --recipe ${RECIPE:-config/policy_v5.yaml} --out $W/shards --workers $NW \
  --budget-minutes ${COLLECT_MIN:-5.5} || { stage failed-collect; exit 1; }
du -sh $W/shards; ls $W/shards | wc -l

stage train
OMP_NUM_THREADS=4 sage-train --shards $W/shards --preset compact_v3 --out $W/policy --steps 0 --max-minutes $TMIN \
  --batch-size ${BATCH:-256} --lr 3e-4 --warmup-steps 300 --subtask-language-prob 0.5 --final-dtype float16 \
  --grounding-weight ${GROUNDING:-0.1} --language-dropout 0.1 --checkpoint-every 4000 --log-every 100 \
  --init-from assets/policies/gr00t_v3 > $W/train.log 2>&1 && echo "ok train" || { stage failed-train; exit 1; }

stage eval
run() { # name, args...
  local name=$1; shift
  sage-eval --policy $W/policy/final --episodes $EP --out $W/eval/$name "$@" > $W/eval/$name.txt 2>&1 \
    && echo "ok $name" || echo "FAILED $name"
}
run stack_blocks_none --task stack_blocks --workers 3 &
for t in pick_apple sort_blocks pour_water; do
  run ${t}_lang --task $t --variant language --workers 2 &
  run ${t}_mism --task $t --variant language --instruction mismatched --workers 2 &
done
wait
stage eval_plain
for t in pick_apple sort_blocks pour_water; do run ${t}_none --task $t --workers 5 & done
wait
stage package  # what comes back: <= 8 files of <= 16 MiB ($W/out/*: copy it to $OUT in the call that waits)
mkdir -p $W/out && tar -cf - -C $W/policy final | split -b 12M - $W/out/ckpt.part.
tar -czf $W/out/results.tgz -C $W eval times log train.log policy/loss.csv --exclude='*.mp4' 2>/dev/null
stage done
echo "end $(date +%T)"
