#!/bin/bash
# Usage: [TRAIN_MIN=7.5] [SE_MIN=3.5] [EP=50] [WORKERS=14] [BENCH=1] [NEW_TASKS=stack_blocks] [OLD_NOVEL=0] [DEMOS_FROM=dir] bash scripts/device_pipeline_v4.sh <workdir>
# Policy v4 on one GPU machine: N1.5 speed / fine-tune memory benches -> 10 recorded demonstrations per new
# task -> dreams (learn/mimic.py) + a replay of the v3 mix -> fine-tune gr00t_v3 (compact_v3) beside the
# sample-efficiency fine-tunes (stack_blocks from 1/3/5/10 demonstrations and 50..all dreams) -> evaluate all.
# Progress in $W/log, per-stage wall clock in $W/times. Run detached (setsid): everything is read from a
# private copy of the repo, so the working tree may be re-copied while it runs.
set -u
W=$1; TMIN=${TRAIN_MIN:-7.5}; SEMIN=${SE_MIN:-3.5}; EP=${EP:-50}; NW=${WORKERS:-14}
mkdir -p $W/eval $W/bench
exec >>$W/log 2>&1
SRC=$(cd "$(dirname "$0")/.." && pwd)
rm -rf $W/repo && mkdir -p $W/repo
tar -C "$SRC" --exclude=./.venv --exclude=./outputs --exclude=./.git --exclude=./.whl -cf - . | tar -C $W/repo -xf -
cd $W/repo
export PYTHONPATH=$W/repo/exts/sage_gr00t:$W/repo/tasks${PYTHONPATH:+:$PYTHONPATH}
export SAGE_GR00T_CONFIG=$W/repo/config SAGE_GR00T_ASSETS=$W/repo/assets
export MUJOCO_GL=egl OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
T0=$(date +%s)
stage() { echo "== $1 $(date +%T)"; echo "$1" > $W/stage; echo "$1 $(( $(date +%s) - T0 ))" >> $W/times; }

# The GPU benches run beside the CPU-bound demos and dreams, on the cores the collection leaves free.
bench() {
  OMP_NUM_THREADS=2 timeout 300 sage-bench policy --preset n1.5 --device cuda > $W/bench/policy_n15.txt 2>&1 \
    || echo "FAILED bench policy"
  OMP_NUM_THREADS=2 timeout 240 sage-bench finetune-memory --preset n1.5 --device cuda --sweep \
    --out $W/bench/finetune_memory.json > $W/bench/finetune_memory.txt 2>&1 || echo "FAILED bench finetune-memory"
  echo "bench done $(( $(date +%s) - T0 ))" >> $W/times
}
[ "${BENCH:-1}" = 1 ] && { bench & }

stage demos
NEW_TASKS=${NEW_TASKS:-stack_blocks}  # the tasks taught from demonstrations (their recipe entries must match)
for t in $NEW_TASKS; do
  if [ -n "${DEMOS_FROM:-}" ] && [ -f "$DEMOS_FROM/$t/meta/sage_episodes.jsonl" ]; then
    # Recorded elsewhere (a machine without LeRobot can dream from a dataset, not record one).
    mkdir -p outputs/demos && cp -r "$DEMOS_FROM/$t" outputs/demos/ && echo "demos $t from $DEMOS_FROM"
  else
    sage-collect --task $t --episodes ${DEMOS:-10} --out outputs/demos/$t --storage image \
      --image-size ${DEMO_SIZE:-224} || echo "FAILED demos $t"
  fi
done

stage dreams_se  # stack_blocks alone: its generation rate gives the teach-from-10 wall clock
sage-collect-mix --recipe ${RECIPE_SE:-config/sample_efficiency.yaml} --out $W/shards_se --workers $NW || echo "FAILED dreams_se"
stage collect
sage-collect-mix --recipe ${RECIPE_V4:-config/policy_v4.yaml} --out $W/shards --workers $NW --budget-minutes ${COLLECT_MIN:-5} \
  || { stage failed-collect; exit 1; }
du -sh $W/shards $W/shards_se

stage train
train() { # out, preset, minutes, threads, shards...
  local out=$1 preset=$2 minutes=$3 threads=$4; shift 4
  OMP_NUM_THREADS=$threads sage-train --shards "$@" --preset $preset --out $out --steps 0 --max-minutes $minutes \
    --batch-size ${BATCH:-256} --lr 3e-4 --warmup-steps 300 --subtask-language-prob 0.5 --final-dtype float16 \
    --checkpoint-every 3000 --log-every 100 --init-from assets/policies/gr00t_v3 > $out.log 2>&1 \
    && echo "ok train $out" || echo "FAILED train $out"
}
stack=($(ls -d $W/shards/stack_blocks-* | sort))
train $W/policy compact_v3 $TMIN 4 $W/shards &
train $W/se_d1 compact_v2 $SEMIN 2 $W/shards_se/stack_blocks-train-mimic1-* &
train $W/se_d3 compact_v2 $SEMIN 2 $W/shards_se/stack_blocks-train-mimic3-* &
train $W/se_d5 compact_v2 $SEMIN 2 $W/shards_se/stack_blocks-train-mimic5-* &
train $W/se_d10 compact_v2 $SEMIN 2 "${stack[@]:0:6}" &
train $W/se_n50 compact_v2 $SEMIN 2 "${stack[@]:0:2}" &
train $W/se_nall compact_v2 $SEMIN 2 "${stack[@]}" &
wait

stage eval
run() { # name, policy, args...
  local name=$1 policy=$2; shift 2
  [ -d $policy ] || { echo "SKIP $name (no $policy)"; return; }
  sage-eval --policy $policy --episodes $EP --out $W/eval/$name "$@" > $W/eval/$name.txt 2>&1 && echo "ok $name" \
    || echo "FAILED $name"
}
P=$W/policy/final
for t in $NEW_TASKS; do
  run ${t}_none $P --task $t --workers 2 &
  run ${t}_rand $P --task $t --randomization train --workers 2 &
  run ${t}_novel $P --task $t --variant novel --workers 1 &
done
for s in d1 d3 d5 d10 n50 nall; do run se_$s $W/se_$s/final --task stack_blocks --workers 1 & done
wait
for t in pick_apple sort_blocks pour_water; do
  w=1; [ $t = pour_water ] && w=2
  run ${t}_none $P --task $t --workers $((w + 1)) &
  run ${t}_rand $P --task $t --randomization train --workers $((w + 1)) &
  [ "${OLD_NOVEL:-0}" = 1 ] && run ${t}_novel $P --task $t --variant novel --workers $w &
  run ${t}_lang $P --task $t --variant language --workers $w &
  run ${t}_mism $P --task $t --variant language --instruction mismatched --workers $w &
  [ $t = sort_blocks ] && wait
done
wait
wait  # the benches, if still running
stage done
echo "end $(date +%T)"
