#!/bin/bash
# Usage: [DEMOS_FROM=dir] [WORKERS=12] [CYCLES=3] [BUDGET_MIN=12] [DEVICE=cuda] [DREAMS=120] [STEPS=2000]
#        [TRAIN_S=90] [THREADS=4] [LR=1e-4] [BATCH=64] [EVAL=50] [WAKE=12] [WAKE_CONTROLLER=sage] [POLICY=assets/policies/gr00t_v8]
#        bash scripts/device_sleep_curve.sh OUTDIR [DEMOS]
# "Improvement through sleep" on one GPU machine (16 cores, no network): a weak policy (gr00t_v8 has never seen
# push_block; the README's measured curve started from gr00t_v3) lives through wake episodes commanded through
# SAGE, its successes and failures go to memory, it
# sleeps (mimic dreams from 3 recorded demonstrations and, after the first cycle, its own stored successes ->
# fine-tune a copy on the GPU -> 50 held-out seeds before / after -> keep or roll back), CYCLES times.
# DEMOS: a LeRobot dataset recorded on a machine with LeRobot (dreams read it with pyarrow alone):
#   sage-collect --task push_block --episodes 3 --out <dir> --storage image --image-size 128
# Writes OUTDIR/sleep/ (sleep_report.json, sleep_report.png, cycle-NNN.json), OUTDIR/sleep_curve.png,
# OUTDIR/log (everything), OUTDIR/times (one line per phase, seconds since start). Expected: ~10-12 min.
set -u
OUT=${1:?usage: device_sleep_curve.sh OUTDIR [DEMOS]}
DEMOS=${2:-${DEMOS_FROM:-}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec >>"$OUT/log" 2>&1
cd "$(dirname "$0")/.."
if [ ! -f "$DEMOS/meta/sage_episodes.jsonl" ] && [ -f "$DEMOS/push_block/meta/sage_episodes.jsonl" ]; then
  DEMOS=$DEMOS/push_block  # DEMOS_FROM holding one folder per task, as the other device scripts take it
fi
[ -f "$DEMOS/meta/sage_episodes.jsonl" ] || { echo "no push_block demonstrations at '$DEMOS'" | tee -a "$OUT/times"; exit 2; }
SAGE_SLEEP=$(command -v sage-sleep || echo .venv/bin/sage-sleep)
export MUJOCO_GL=${MUJOCO_GL:-egl} OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
# The memory store keeps every wake episode's frames (hundreds of MB): outside OUTDIR.
WORK=${WORK:-$(mktemp -d /tmp/sage_sleep.XXXXXX)}
mkdir -p "$WORK" && rm -rf "$OUT/sleep" "$WORK/memory.db"*
: > "$OUT/times"
echo "== $(date +%T) demos $DEMOS, workers ${WORKERS:-12}, device ${DEVICE:-cuda}, work $WORK"
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader || true
T0=$(date +%s)
# 3 cycles x (12 SAGE wake episodes + 120 dreams from ~240 attempts + <= 90 s of GPU fine-tuning + 50 held-out
# episodes of <= 250 steps) + the starting policy's 50 episodes; --budget-minutes shortens each cycle's training to its
# share of the time left, and starts no cycle that would
# end past the budget (fine-tuning is shortened first).
"$SAGE_SLEEP" --task push_block --policy "${POLICY:-assets/policies/gr00t_v8}" --datasets "$DEMOS" \
  --memory "$WORK/memory.db" --cycles "${CYCLES:-3}" --wake-episodes "${WAKE:-12}" --wake-max-steps "${EVAL_STEPS:-250}" \
  --wake-controller "${WAKE_CONTROLLER:-sage}" --device "${DEVICE:-cuda}" --num-threads "${THREADS:-4}" \
  --workers "${WORKERS:-12}" --budget-minutes "${BUDGET_MIN:-12}" --progress "$OUT/times" \
  --sleep.out "$OUT/sleep" --sleep.dreams "${DREAMS:-120}" --sleep.max-dream-attempts $(( ${DREAMS:-120} * 5 / 2 )) \
  --sleep.replay-episodes 8 --sleep.steps "${STEPS:-2000}" --sleep.max-train-seconds "${TRAIN_S:-90}" \
  --sleep.batch-size "${BATCH:-64}" --sleep.lr "${LR:-1e-4}" --sleep.eval-episodes "${EVAL:-50}" \
  --sleep.eval-max-steps "${EVAL_STEPS:-250}" --sleep.eval-image-size 128 --mimic.image-size 128 \
  > "$OUT/cycles.jsonl"
RC=$?
cat "$OUT/cycles.jsonl"
cp "$OUT/sleep/sleep_report.png" "$OUT/sleep_curve.png" 2>/dev/null
# Checkpoints stay on the machine unless asked for (36 MB each): the report and the curve are what come back.
rm -rf "$OUT/sleep/work"
[ "${KEEP_CHECKPOINTS:-0}" = 1 ] || rm -f "$OUT"/sleep/cycle-*/model.safetensors
echo "exit $RC total $(( $(date +%s) - T0 ))s" | tee -a "$OUT/times"
echo done >> "$OUT/times"
exit $RC
