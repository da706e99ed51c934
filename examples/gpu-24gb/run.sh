#!/usr/bin/env bash
# One 24 GB GPU (RTX 3090/4090, L4, A10): curate a pool with a GGUF judge on the GPU and small LoRA reward
# models, then train the final reward model with QLoRA on an 8B backbone.
# Needs: CUDA, `pip install -e ".[gpu]"`, llama-cpp-python built for CUDA
#   (CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python),
#   a judge GGUF on disk ($JUDGE_GGUF, e.g. Qwen3-8B-Q4_K_M.gguf) and the backbones from the hub or local paths.
# Inputs: $POOL (your preference pairs, any format `skyrm import` reads) and $GOLD (a few hundred to a few
# thousand human-verified pairs). Rough time for a 100k-pair pool: see README.md.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-gpu24}"
JUDGE="llamacpp:${JUDGE_GGUF:?set JUDGE_GGUF to a judge .gguf}?n_gpu_layers=-1&n_ctx=8192"
CURATE_BASE="${CURATE_BASE:-Qwen/Qwen3-0.6B}"   # the reward models inside curation: small, retrained each iteration
export SKYRM_DB="$OUT/lab.db"
mkdir -p "$OUT"

skyrm import "${POOL:?set POOL}" --source pool
skyrm import "${GOLD:?set GOLD}" --as gold --source gold
skyrm attributes --judge "$JUDGE" --pool gold          # attributes steer example retrieval and the human queue

# Check the judge on gold before paying for a full run; --dry-run prints judge calls and time.
skyrm curate run --dry-run --judge "$JUDGE" --rm-method lora --base "$CURATE_BASE" --max-length 1024 \
  --budget-judge-calls 20000
skyrm curate run --judge "$JUDGE" --rm-method lora --base "$CURATE_BASE" --max-length 1024 \
  --iterations 4 --budget-judge-calls 20000 --workdir "$OUT/curate"
skyrm annotate status                                    # pairs Stage 1 sent to humans: `skyrm annotate` labels them

# The final reward model: QLoRA on an 8B backbone (qlora.toml), evaluated on the benchmarks you have.
skyrm train --config "$HERE/qlora.toml" --pool curated --out "$OUT/rm-8b"
skyrm eval --model "$OUT/rm-8b" --bench "rm-bench=${RM_BENCH:-../shared/data/rm-bench}" --out "$OUT/eval"
skyrm export-model "$OUT/rm-8b" --out "$OUT/rm-8b-merged"
