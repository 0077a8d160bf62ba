#!/usr/bin/env bash
# [7 of 7]'s class-incremental results of the README: 5 tasks of 2 classes on digits and (when Debian's
# dataset-fashion-mnist is installed) Fashion-MNIST, by the three methods of `secvit train --tasks`, then the gated
# model under MPC (`secvit check`). Checkpoints go to runs/tasks/ (not committed), reports to
# benchmarks/results/tasks/. Steps whose checkpoint exists are skipped, and a dataset whose MPC check report exists
# is kept (delete it to measure again); DIGITS_ONLY=1 skips Fashion-MNIST; THREADS: torch threads (default 2).
set -euo pipefail
BIN=${BIN:-.venv/bin}
R=runs/tasks
OUT=benchmarks/results/tasks
mkdir -p "$R" "$OUT"

continual() {  # DATA MODEL EPOCHS_PER_TASK LR CHECK_N MPC_N
  local data=$1 model=$2 epochs=$3 lr=$4 n=$5 mpc_n=$6
  [ -f "$OUT/continual_${data}_gated_check.json" ] && return
  for m in gated finetune joint; do
    [ -f "$R/${data}_$m/meta.json" ] || "$BIN/secvit" train --model "$model" --data "$data" --tasks 5 \
        --threads "${THREADS:-2}" --continual $m \
        --epochs "$epochs" --lr "$lr" --warmup-epochs 1 --out "$R/${data}_$m"
    "$BIN/python" -c "import json, sys; m = json.load(open('$R/${data}_$m/meta.json')); json.dump({k: m[k] for k in \
('model', 'data', 'test_accuracy', 'test_images', 'continual')}, sys.stdout, indent=1)" > "$OUT/continual_${data}_$m.json"
  done
  "$BIN/secvit" check --checkpoint "$R/${data}_gated" --n "$n" --mpc-n "$mpc_n" --batch-size 16 \
      --json "$OUT/continual_${data}_gated_check.json"
}

continual digits vit_lite_2_2_32 25 2e-3 360 64
if [ -d /usr/share/datasets/fashion-mnist ] && [ -z "${DIGITS_ONLY:-}" ]; then
  continual fashion-mnist vit_lite_6_4_28 3 1e-3 10000 256
fi
