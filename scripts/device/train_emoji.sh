#!/usr/bin/env bash
# Go on training the shipped emoji model on a lent GPU in one call (about 9 minutes), then pack the exported
# pipeline into $OUT. Prepare here first: python scripts/device/pack.py (writes .device/).
# The base and super-res stages resume from weights/ (the prompts caption recipe, a constant learning
# rate and the moving average that export takes); the critics start afresh from the new generators.
# FROM_SCRATCH=1 trains every stage from random weights instead (the tokenizer first).
# Reproduce on any machine: the same commands with DEVICE=cpu and longer minutes (see weights/README.md).
set -euo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-1}          # multiplies every stage's minutes (SCALE=0.02 for a smoke test)
OUT=${OUT:-/tmp/out}
WORK=${WORK:-/tmp/dev}
mkdir -p "$OUT"
m() { python3 -c "print($1 * $SCALE)"; }
python3 scripts/device/pack.py --unpack .device --to "$WORK"
(nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || true) | tee "$OUT/machine.txt"
common=(--data "$WORK/emoji" --run "$WORK/run" --device "$DEVICE" --text-encoder "$WORK/minilm" --checkpoint-every 60)
train() { python3 -m muse.train "$@" "${common[@]}" 2>&1 | tr '\r' '\n' | tee -a "$OUT/train.log" | grep -v "it/s\]$" | tail -n 2; }
finish() {
  python3 -m muse.train export --run "$WORK/run" --out "$WORK/weights" "${common[@]}" || true
  tar cf - -C "$WORK" weights | split -b 15m - "$OUT/weights.tar.part-" || true
  (cd "$WORK/run" && find . -name metrics.jsonl -o -name loss.png -o -name state.json -o -name run.json | tar czf "$OUT/logs.tgz" -T -) || true
}
trap finish EXIT
long=(--captions prompts --lr-schedule constant --batch-size 256)
if [ "${FROM_SCRATCH:-0}" = 1 ]; then
  train tokenizer --minutes "$(m 2.2)" --batch-size 128 --lr 1e-3
  train base --minutes "$(m 1.8)" "${long[@]}" --lr 8e-4
  train superres --minutes "$(m 2.4)" "${long[@]}" --lr 8e-4
  train preview --minutes "$(m 0.3)" --batch-size 256 --lr 2e-3
else
  train base --init weights --minutes "$(m 4.5)" "${long[@]}" --lr 4e-4
  train superres --minutes "$(m 2.5)" "${long[@]}" --lr 4e-4
  rm -rf "$WORK/run/base_critic" "$WORK/run/superres_critic"  # seeded from the shipped critics: start afresh
fi
train critics --minutes "$(m 1)" --batch-size 256 --lr 3e-4
echo "training done"
