#!/usr/bin/env bash
# Compression, distillation and search results of the README (about 70 minutes on 2 cores):
# every student is trained from the shipped exact teacher, then `secvit pareto` measures
# accuracy against secure cost into benchmarks/results/compression/. Checkpoints go to
# runs/compression/ (not committed). Steps whose checkpoint exists are skipped.
set -euo pipefail
BIN=${BIN:-.venv/bin}
T=checkpoints/vit_lite_7_4_32-digits
R=runs/compression
OUT=benchmarks/results/compression
mkdir -p "$R" "$OUT"
train() {  # OUT TRAIN_OPTIONS...: a student of the exact teacher (THREADS: torch threads, default 2)
  local out=$1; shift
  [ -f "$R/$out/meta.json" ] || "$BIN/secvit" train --threads "${THREADS:-2}" --init $T "$@" --out "$R/$out"
}

# distillation of MPCFormer's policy, 15 epochs each: none, KD and NKD first
train distill_none --policy mpcformer --epochs 15
for m in kd nkd; do train distill_$m --policy mpcformer --teacher $T --distill $m --epochs 15; done

# MPC-aware search at two budgets (25% and 50% of heads keep ReLU-softmax), retrained with KD as long as
# the shipped mpcvit checkpoint was fine-tuned (25 epochs)
for f in 25 50; do
  [ -f "$OUT/searched_f$f.yaml" ] || "$BIN/secvit" search --checkpoint $T --fraction 0.$f --epochs 5 \
      --out "$OUT/searched_f$f.yaml" --json "$OUT/search_f$f.json"
  train searched_f$f --policy "$OUT/searched_f$f.yaml" --teacher $T --distill kd --epochs 25
done

# half depth by structural reparameterization (7 -> 4 blocks), and its MPCFormer student
[ -f "$R/half_depth/meta.json" ] || "$BIN/secvit" compress --teacher $T --depth 4 --epochs 20 --out "$R/half_depth"
[ -f "$R/half_depth_mpcformer_kd/meta.json" ] || "$BIN/secvit" train --init "$R/half_depth" --policy mpcformer \
    --teacher $T --distill kd --epochs 15 --out "$R/half_depth_mpcformer_kd"

# the other distillers of MPCFormer's policy: its two stages, USKD (no teacher), TinyViT's sparse logits
train distill_mpcformer --policy mpcformer --teacher $T --distill mpcformer --epochs 15
train distill_uskd --policy mpcformer --distill uskd --epochs 15
[ -f "$R/logits.safetensors" ] || "$BIN/secvit" cache-logits --teacher $T --top-k 5 --epochs 15 --out "$R/logits.safetensors"
train distill_sparse --policy mpcformer --distill sparse --cached-logits "$R/logits.safetensors" --epochs 15

# DCAL's pair-wise cross-attention: MPCFormer's policy 15 epochs with PWCA, against distill_none (same schedule)
train pwca_mpcformer --policy mpcformer --epochs 15 --pwca
"$BIN/secvit" pareto "$R/distill_none" "$R/pwca_mpcformer" --names without-pwca,with-pwca --network wan \
    --json "$OUT/pwca.json"
# TinyCLIP: 7 -> 5 -> 3 blocks (inheritance, then 10 epochs of affinity distillation at each stage) against one-shot
# inheritance 7 -> 3 with the same 20 epochs of affinity distillation
[ -f "$R/inherit3/meta.json" ] || "$BIN/secvit" inherit --teacher $T --depth 3 --out "$R/inherit3"
[ -f "$R/oneshot3/meta.json" ] || "$BIN/secvit" train --init "$R/inherit3" --teacher $T --distill affinity --epochs 20 \
    --out "$R/oneshot3"
[ -f "$R/inherit5/meta.json" ] || "$BIN/secvit" inherit --teacher $T --depth 5 --out "$R/inherit5"
[ -f "$R/stage5/meta.json" ] || "$BIN/secvit" train --init "$R/inherit5" --teacher $T --distill affinity --epochs 10 \
    --out "$R/stage5"
[ -f "$R/stage5_inherit3/meta.json" ] || "$BIN/secvit" inherit --teacher "$R/stage5" --depth 3 --out "$R/stage5_inherit3"
[ -f "$R/progressive3/meta.json" ] || "$BIN/secvit" train --init "$R/stage5_inherit3" --teacher $T --distill affinity \
    --epochs 10 --out "$R/progressive3"
"$BIN/secvit" pareto "$R/oneshot3" "$R/progressive3" --names one-shot-7-to-3,progressive-7-5-3 --network wan \
    --json "$OUT/tinyclip.json"

"$BIN/secvit" pareto $(for m in none kd nkd mpcformer uskd sparse; do echo "$R/distill_$m"; done) \
    --names none,kd,nkd,mpcformer,uskd,sparse --network wan --json "$OUT/distill_mpcformer.json"
"$BIN/secvit" pareto $T $T-mpcformer $T-mpcvit "$R/searched_f25" "$R/searched_f50" "$R/half_depth" \
    "$R/half_depth_mpcformer_kd" checkpoints/vit_lite_3_4_32-digits-lean \
    --names exact,mpcformer,mpcvit,searched-25%,searched-50%,half-depth,half-depth-mpcformer,lean-3-blocks \
    --network wan --json "$OUT/pareto_wan.json" --plot "$OUT/pareto_wan.png"
"$BIN/python" benchmarks/readme_tables.py
