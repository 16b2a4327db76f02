#!/usr/bin/env bash
# Go on training the shipped emoji model on a lent GPU in one call, then send back the stages it trained.
# Prepare here first: python scripts/device/pack.py --stages base (writes .device/: the starting weights, token
# ids, captions and text encoder); then move weights/ out of the checkout for the call (with the rest of the
# tree it is over the 64 MiB that travels) and name .device in carry.
#
# STAGES (default "base") names the stages that go on from the packed weights, in order: base, superres,
# critics (pack the generators they need with --stages: base,superres for the critics).
# Each runs MINUTES (default 6.5) at batch 256 on the prompts caption recipe, its rate falling on a cosine
# to 0.1x, with a held-out check every VALIDATE_S seconds (default 30) for the curve. The critics start
# afresh from the new generators. What comes back in $OUT: each trained component of the exported
# pipeline (weights.tar.part-*, within the device's 64 MiB of returned files), the logs (logs.tgz,
# train.log) and the machine (machine.txt). Unpack here with `cat weights.tar.part-* | tar x`.
# Reproduce on any machine: the same commands with DEVICE=cpu (SCALE=0.02 for a smoke test).
set -euo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DEVICE=${DEVICE:-cuda}
STAGES=${STAGES:-base}
MINUTES=${MINUTES:-6.5}
SCALE=${SCALE:-1}          # multiplies the minutes
VALIDATE_S=${VALIDATE_S:-30}
OUT=${OUT:-/tmp/out}
WORK=${WORK:-/tmp/dev}
mkdir -p "$OUT"
minutes=$(python3 -c "print($MINUTES * $SCALE)")
python3 scripts/device/pack.py --unpack .device --to "$WORK"
(nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || true) | tee "$OUT/machine.txt"
common=(--data "$WORK/emoji" --run "$WORK/run" --device "$DEVICE" --text-encoder "$WORK/minilm" --checkpoint-every 60)
train() { python3 -m muse.train "$@" "${common[@]}" 2>&1 | tr '\r' '\n' | tee -a "$OUT/train.log" | grep -v "it/s\]$" | tail -n 4; }
trained=()
finish() {
  python3 -m muse.train export --run "$WORK/run" --out "$WORK/export" "${common[@]}" || true
  if [ ${#trained[@]} -gt 0 ]; then
    tar cf - -C "$WORK/export" "${trained[@]}" | split -b 15m - "$OUT/weights.tar.part-" || true
  fi
  (cd "$WORK/run" && find . -name metrics.jsonl -o -name loss.png -o -name state.json -o -name run.json \
    | tar czf "$OUT/logs.tgz" -T -) || true
}
trap finish EXIT
long=(--minutes "$minutes" --captions prompts --lr-schedule cosine --batch-size 256 --validate-every "$VALIDATE_S")
for stage in $STAGES; do
  case $stage in
    base|superres) train "$stage" "${long[@]}" --lr 4e-4; trained+=("$stage") ;;
    critics) rm -rf "$WORK/run/base_critic" "$WORK/run/superres_critic"
             train critics --minutes "$minutes" --batch-size 256 --lr 3e-4; trained+=(base_critic superres_critic) ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
echo "training done"
