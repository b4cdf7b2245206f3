#!/usr/bin/env bash
# Reproduce assets/policies/gr00t_v3 (removed from the tree after 937bdc5; `git checkout 937bdc5 -- assets/policies/gr00t_v3`) on a machine with a CUDA GPU and many cores: collect config/policy_v3.yaml
# (scripted expert, parallel), then fine-tune gr00t_v2 on it for 9 minutes.
#   bash scripts/train_policy_v3.sh [out folder] [training minutes]
# gr00t_v2 is read from INIT_FROM, else restored from commit 5626748 (where it was last in the tree), else it
# must first be trained with scripts/train_policy_v2.sh.
set -euo pipefail
OUT=${1:-outputs/policy_v3}
MINUTES=${2:-9}
INIT_FROM=${INIT_FROM:-$OUT/gr00t_v2}
if [ ! -f "$INIT_FROM/model.safetensors" ]; then
  mkdir -p "$OUT/restore"
  git archive 5626748 assets/policies/gr00t_v2 | tar -x -C "$OUT/restore"
  INIT_FROM=$OUT/restore/assets/policies/gr00t_v2
fi
sage-collect-mix --recipe config/policy_v3.yaml --out "$OUT/shards" --workers "${WORKERS:-15}"
sage-train --shards "$OUT/shards" --preset compact_v2 --init-from "$INIT_FROM" --out "$OUT/train" --steps 0 \
    --max-minutes "$MINUTES" --batch-size 256 --lr 3e-4 --warmup-steps 500 --subtask-language-prob 0.5 --amp bf16 \
    --final-dtype float16 --checkpoint-every 3000 --log-every 100
echo "policy: $OUT/train/final"
