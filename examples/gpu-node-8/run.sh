#!/usr/bin/env bash
# One 8-GPU node: the judge behind vLLM on GPUs 0-3 (OpenAI-compatible, many requests in flight), curation's
# reward models on GPU 4, scoring data-parallel and the final reward model trained data-parallel on GPUs 4-7.
# Needs: CUDA, `pip install -e ".[gpu]"` and vllm (in its own environment is fine), the models from the hub or
# local paths. Inputs: $POOL and $GOLD as for the one-GPU recipe. Rough time for a 1M-pair pool: see README.md.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-node8}"
JUDGE_MODEL="${JUDGE_MODEL:-Qwen/Qwen3-32B}"
export SKYRM_DB="$OUT/lab.db"
mkdir -p "$OUT"

# The judge server; skyrm renders prompts with the model's chat template (template=) so logprob mode reads
# next-token probabilities from /completions.
CUDA_VISIBLE_DEVICES=0,1,2,3 vllm serve "$JUDGE_MODEL" --tensor-parallel-size 4 --port 8000 \
  --max-model-len 16384 > "$OUT/vllm.log" 2>&1 &
VLLM=$!
trap 'kill $VLLM' EXIT
until curl -sf http://127.0.0.1:8000/v1/models > /dev/null; do sleep 10; done
JUDGE="openai:http://127.0.0.1:8000/v1?concurrency=64&timeout=300&template=${JUDGE_TEMPLATE:?set JUDGE_TEMPLATE to the model's chat template (.jinja)}#$JUDGE_MODEL"

skyrm import "${POOL:?set POOL}" --source pool
skyrm import "${GOLD:?set GOLD}" --as gold --source gold

export CUDA_VISIBLE_DEVICES=4
skyrm curate run --dry-run --judge "$JUDGE" --rm-method lora --base Qwen/Qwen3-1.7B --max-length 2048 \
  --budget-judge-calls 500000
skyrm curate run --judge "$JUDGE" --rm-method lora --base Qwen/Qwen3-1.7B --max-length 2048 \
  --iterations 8 --budget-judge-calls 500000 --workdir "$OUT/curate"

# The final reward model, data-parallel on four GPUs (rank 0 writes checkpoints and the store).
export CUDA_VISIBLE_DEVICES=4,5,6,7
accelerate launch --multi_gpu --num_processes 4 -m skyrm train --config "$HERE/train.toml" \
  --pool curated --out "$OUT/rm-8b"
accelerate launch --multi_gpu --num_processes 4 -m skyrm score --model "$OUT/rm-8b" --pool discarded
skyrm eval --model "$OUT/rm-8b" --bench "rmb=${RMB:-../shared/data/rmb}" --out "$OUT/eval"
