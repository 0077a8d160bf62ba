#!/usr/bin/env bash
# [7 of 7]'s supernet results of the README: an MPC-budget supernet (secvit supernet train) on digits and, when
# Debian's dataset-fashion-mnist is installed, Fashion-MNIST; four members spread along its pool's Pareto front
# (secvit supernet front: held-out accuracy against rounds), each extracted at its rounds as the budget (inherited
# weights, fine-tuned); the same architectures trained from a fresh start as long as the fine-tuning (what the
# inherited weights are worth) and as long as the supernet and the fine-tuning together (the per-budget baseline);
# and `secvit pareto` of them beside MPCViT's search (the shipped one, and make compression's where runs/compression
# holds it) and the shipped compressed checkpoints, into benchmarks/results/compression/supernet_*.json.
# Checkpoints go to runs/supernet/ (named by the budget); steps whose output exists are skipped. DIGITS_ONLY=1
# skips Fashion-MNIST; THREADS: torch threads (default 2).
set -euo pipefail
BIN=${BIN:-.venv/bin}
R=runs/supernet
OUT=benchmarks/results/compression
mkdir -p "$R" "$OUT"

supernet() {  # DATA MODEL EPOCHS FINETUNE_EPOCHS [OTHER_CHECKPOINT NAME]...
  local data=$1 model=$2 epochs=$3 ft=$4 sn=$R/$1 threads=${THREADS:-2} front=$OUT/supernet_$1_front.json
  shift 4
  [ -f "$sn/meta.json" ] || "$BIN/secvit" supernet train --model "$model" --data "$data" --epochs "$epochs" \
      --out "$sn" --threads "$threads" $([ -f "$sn/train_state.pt" ] && echo --resume)  # a stopped run continues
  [ -f "$front" ] || "$BIN/secvit" supernet front --supernet "$sn" --points 4 --json "$front"
  local budgets paths=() names=() b variant suffix label args
  budgets=$("$BIN/python" -c "import json; print(*(r['rounds'] for r in json.load(open('$front')) if r['chosen']))")
  # suffix:label:arguments. Inherited and fine-tuned first; then the fine-tuning's epochs and rate from a fresh
  # initialisation (what inheriting is worth); then the per-budget baselines (the longer runs)
  for variant in ":supernet:--epochs $ft" "_fresh:fresh:--epochs $ft --from-scratch" \
                 "_scratch:alone:--epochs $((epochs + ft)) --lr 1e-3 --from-scratch"; do
    IFS=: read -r suffix label args <<< "$variant"
    for b in $budgets; do
      # shellcheck disable=SC2086  # args: several words
      [ -f "$R/${data}_r$b$suffix/meta.json" ] || "$BIN/secvit" supernet search --supernet "$sn" --max-rounds "$b" \
          $args --threads "$threads" --out "$R/${data}_r$b$suffix"
      paths+=("$R/${data}_r$b$suffix"); names+=("$label-r$b")
    done
  done
  while [ $# -gt 1 ]; do
    if [ -f "$1/meta.json" ]; then paths+=("$1"); names+=("$2"); fi
    shift 2
  done
  "$BIN/secvit" pareto "${paths[@]}" --names "$(IFS=,; echo "${names[*]}")" --network wan \
      --json "$OUT/supernet_$data.json" --plot "$OUT/supernet_$data.png"
}

supernet digits vit_lite_7_4_32 60 10 \
    checkpoints/vit_lite_7_4_32-digits-mpcvit mpcvit-search checkpoints/vit_lite_7_4_32-digits-mpcformer mpcformer \
    runs/compression/searched_f25 mpcvit-search-25 runs/compression/searched_f50 mpcvit-search-50 \
    runs/compression/half_depth_mpcformer_kd half-depth-mpcformer \
    checkpoints/vit_lite_7_4_32-digits exact checkpoints/vit_lite_3_4_32-digits-lean lean-3-blocks
if [ -z "${DIGITS_ONLY:-}" ] && [ -d /usr/share/datasets/fashion-mnist ]; then  # DIGITS_ONLY=1: digits alone
  supernet fashion-mnist vit_lite_6_4_28 10 2 \
      checkpoints/vit_lite_6_4_28-fashion exact checkpoints/vit_lite_6_4_28-fashion-lean lean
fi
