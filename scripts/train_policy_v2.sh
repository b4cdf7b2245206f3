#!/usr/bin/env bash
# Reproduce assets/policies/gr00t_v2 (now only in git history, commit 5626748) in one command on a machine with a CUDA GPU and many cores:
# collect the demonstration mix of config/policy_v2.yaml (scripted expert, parallel), then train compact_v2.
#   bash scripts/train_policy_v2.sh [out folder] [training minutes]
# The shipped checkpoint trained 9.0 min (9,786 steps) and then 4.7 min more from its resumable state
# (--steps 15400: the cosine schedule re-stretched to 15,400 steps, stopped by the budget at 14,826).
set -euo pipefail
OUT=${1:-outputs/policy_v2}
MINUTES=${2:-14}
sage-collect-mix --recipe config/policy_v2.yaml --out "$OUT/shards" --workers "${WORKERS:-15}"
sage-train --shards "$OUT/shards" --preset compact_v2 --out "$OUT/train" --steps 0 --max-minutes "$MINUTES" \
    --batch-size 256 --lr 4e-4 --warmup-steps 500 --subtask-language-prob 0.5 --final-dtype float16 \
    --checkpoint-every 3000 --log-every 100
echo "policy: $OUT/train/final"
