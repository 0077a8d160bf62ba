#!/usr/bin/env bash
# Post-training quantization table of the README (`make compression` runs it): each shipped
# exact checkpoint (digits; Fashion-MNIST where Debian's package is installed) quantized by
# min-max, RepQ-ViT and I&S-ViT at W8A8, W6A6 and W4A4 (64 calibration images, seed 0);
# one JSON report each in benchmarks/results/quantize/. Reports that exist are kept.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=benchmarks/results/quantize
mkdir -p "$OUT"
checkpoints=(checkpoints/vit_lite_7_4_32-digits)
[ -d /usr/share/datasets/fashion-mnist ] && checkpoints+=(checkpoints/vit_lite_6_4_28-fashion)
for c in "${checkpoints[@]}"; do
  for m in minmax repq isvit; do
    for b in 8 6 4; do
      j="$OUT/$(basename "$c")_${m}_w${b}a${b}.json"
      [ -f "$j" ] || "$BIN/secvit" quantize --checkpoint "$c" --method $m --w-bits $b --a-bits $b --json "$j"
    done
  done
done
