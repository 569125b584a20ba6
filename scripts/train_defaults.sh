#!/usr/bin/env bash
# Reproduce the shipped default models (shared/aligners/default_models/) from ../shared/data.
# Runs on CPU as written (inspectors ~30 min on 2 cores, mostly MiniLM embeddings, cached in
# $WORK/cache; the aligner ~15 s per step of 16 sequences on 2 cores, so prefer a GPU for it:
# the same command runs there unchanged, the shipped adapter took 3 min on one H100).
# Usage: scripts/train_defaults.sh [inspectors|aligner|all]   (WORK=/path/to/scratch)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
WORK=${WORK:-/tmp/aligners-defaults}
OUT=shared/aligners/default_models
what=${1:-all}
mkdir -p "$WORK"
ALPACA=("$DATA/alpacaeval_aligner2b/gpt-4-turbo-2024-04-09.json" "$DATA/alpacaeval_aligner2b/claude-3-opus-20240229.json")
HH="$DATA/hh_rlhf/harmless-base-test.jsonl.gz"

if [[ $what == inspectors || $what == all ]]; then
  # ethical: HH-RLHF harmless chosen = aligned, rejected = misaligned (noisy by construction)
  aligners data convert "$HH" -o "$WORK/ethical_examples.jsonl" --to examples --criterion ethical
  # helpful: Aligner-2B corrections = aligned, GPT-4 Turbo / Claude 3 Opus originals = less aligned
  aligners data convert "${ALPACA[@]}" -o "$WORK/helpful_examples.jsonl" --to examples --criterion helpful
  # factuality: proxy only (no labelled factuality data): reference answers vs tampered copies
  aligners data perturb "${ALPACA[@]}" -o "$WORK/factuality_examples.jsonl" --criterion factuality --seed 0
  for c in ethical helpful factuality; do
    aligners train inspector "$WORK/${c}_examples.jsonl" --criterion "$c" -o "$OUT/inspectors/$c" \
      --encoder minilm --hidden-size 0 --epochs 30 --learning-rate 1e-3 --weight-decay 1e-4 --eval-fraction 0.2 --seed 0 \
      --cache-dir "$WORK/cache"
  done
fi

if [[ $what == aligner || $what == all ]]; then
  aligners data convert "${ALPACA[@]}" -o "$WORK/alpaca_triples.jsonl" --criterion helpful
  aligners data convert "$HH" -o "$WORK/hh_triples.jsonl" --criterion ethical
  # identity copies under the factuality criterion: we have no factuality corrections, so the
  # aligner learns to leave (presumably correct) answers alone there
  aligners data convert "${ALPACA[0]}" -o "$WORK/factuality_copies.jsonl" --criterion factuality \
    --identity --drop-unchanged --limit 400
  aligners data split "$WORK/alpaca_triples.jsonl" "$WORK/hh_triples.jsonl" "$WORK/factuality_copies.jsonl" \
    --eval-fraction 0.05 --seed 0 -o "$WORK/aligner_train.jsonl" --eval-output "$WORK/aligner_heldout.jsonl"
  aligners train aligner "$WORK/aligner_train.jsonl" --eval-data "$WORK/aligner_heldout.jsonl" \
    -o "$WORK/aligner" --model smollm2 --format chat --method lora --lora-r 8 --lora-alpha 16 \
    --epochs 2 --learning-rate 2e-4 --batch-size 16 --max-length 1024 --warmup-fraction 0.2 \
    --copy-fraction 0.25 --save-steps 1000 --seed 0 --max-new-tokens 384
  aligners train evaluate-aligner "$WORK/aligner" "$WORK/aligner_heldout.jsonl" \
    -o "$WORK/aligner_eval.json" --max-new-tokens 384 --batch-size 64
  mkdir -p "$OUT/aligner/adapter"
  cp "$WORK/aligner/adapter/adapter_config.json" "$WORK/aligner/adapter/adapter_model.safetensors" "$OUT/aligner/adapter/"
  cp "$WORK/aligner/aligner_config.json" "$OUT/aligner/"
fi
