#!/usr/bin/env bash
# [7 of 7]'s supernet results of the README: an MPC-budget supernet (secvit supernet train) on digits and, when
# Debian's dataset-fashion-mnist is installed, Fashion-MNIST; four subnets at budgets spread over its pool's rounds
# (inherited weights, fine-tuned), the same architectures trained on their own for as many epochs as the supernet
# and the fine-tuning together (the per-budget baseline), and `secvit pareto` of them beside MPCViT's search and the
# shipped checkpoints, into benchmarks/results/compression/supernet_*.json. Checkpoints go to runs/supernet/;
# DIGITS_ONLY=1 skips Fashion-MNIST.
set -euo pipefail
BIN=${BIN:-.venv/bin}
R=runs/supernet
OUT=benchmarks/results/compression
mkdir -p "$R" "$OUT"

supernet() {  # DATA MODEL EPOCHS FINETUNE_EPOCHS [OTHER_CHECKPOINT NAME]...
  local data=$1 model=$2 epochs=$3 ft=$4 sn=$R/$1
  shift 4
  [ -f "$sn/meta.json" ] || "$BIN/secvit" supernet train --model "$model" --data "$data" --epochs "$epochs" --out "$sn" \
      $([ -f "$sn/train_state.pt" ] && echo --resume)  # a stopped run continues
  local budgets paths=() names=()
  budgets=$("$BIN/python" -c "import json; r = sorted(p['rounds'] for p in json.load(open('$sn/meta.json'))['supernet']\
['pool']); print(*sorted({r[round(q * (len(r) - 1))] for q in (0.1, 0.35, 0.65, 1.0)}))")
  for b in $budgets; do
    [ -f "$R/${data}_r$b/meta.json" ] || "$BIN/secvit" supernet search --supernet "$sn" --max-rounds "$b" \
        --epochs "$ft" --out "$R/${data}_r$b"
    [ -f "$R/${data}_r${b}_scratch/meta.json" ] || "$BIN/secvit" supernet search --supernet "$sn" --max-rounds "$b" \
        --epochs $((epochs + ft)) --lr 1e-3 --from-scratch --out "$R/${data}_r${b}_scratch"
    paths+=("$R/${data}_r$b" "$R/${data}_r${b}_scratch")
    names+=("supernet-r$b" "alone-r$b")
  done
  while [ $# -gt 1 ]; do
    if [ -f "$1/meta.json" ]; then paths+=("$1"); names+=("$2"); fi
    shift 2
  done
  "$BIN/secvit" pareto "${paths[@]}" --names "$(IFS=,; echo "${names[*]}")" --network wan \
      --json "$OUT/supernet_$data.json" --plot "$OUT/supernet_$data.png"
}

supernet digits vit_lite_7_4_32 60 10 \
    runs/compression/searched_f25 mpcvit-search-25 runs/compression/searched_f50 mpcvit-search-50 \
    runs/compression/half_depth_mpcformer_kd half-depth-mpcformer \
    checkpoints/vit_lite_7_4_32-digits exact checkpoints/vit_lite_3_4_32-digits-lean lean-3-blocks
if [ -z "${DIGITS_ONLY:-}" ] && [ -d /usr/share/datasets/fashion-mnist ]; then  # DIGITS_ONLY=1: digits alone
  supernet fashion-mnist vit_lite_6_4_28 10 2 \
      checkpoints/vit_lite_6_4_28-fashion exact checkpoints/vit_lite_6_4_28-fashion-lean lean
fi
