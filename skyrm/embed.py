"""Sentence embeddings of pairs (METHOD.md Stage 1 step 2): ``skyrm embed`` as a library call.

What is embedded is a pair's ``(x, a)``: its conversation history and, under the
default recipe, its preference attributes. The text recipes (their version is part
of the stored recipe name, so a changed recipe never mixes with older vectors):

- ``prompt@1``: the history rendered plainly, ``"User: …\\n\\nAssistant: …"``
  (``text.render_plain``; system turns included);
- ``prompt+attributes@1``: the same, then, when the pair has attributes, a blank line
  and ``"Task: CATEGORY; OBJECTIVITY; controversiality: LEVEL.\\nA good response:
  DESIRED\\nGuideline: GUIDELINE"`` from its latest attributes row. A pair without
  attributes gets the ``prompt`` text; a pair whose attributes are written after it was
  embedded is embedded again on the next run.

The encoder is any sentence-transformers style directory (the offline default is the
PyPI-shipped MiniLM, ``skyrm.shipped_models.minilm_dir``), a plain transformers encoder
directory, or a hub name (through the local hub cache, or a download where a network
exists). Pooling follows the directory's ``1_Pooling/config.json`` (mean or CLS; mean
when absent), texts are cut at ``sentence_bert_config.json``'s ``max_seq_length`` (else
the model's limit, at most 512), and vectors are L2-normalised, so a dot product is the
cosine: for MiniLM this equals sentence-transformers' ``encode(normalize_embeddings=True)``.
Vectors are stored as float32 with the model name, the recipe and a fingerprint of the
encoder's files and settings (``Store.put_embeddings``).

Incremental and resumable: only pairs without a current vector in the (fingerprint,
recipe) space are embedded, in chunks that commit one transaction each, so a run killed
at any point loses at most one chunk and the next run embeds only what is missing.
Within a chunk texts are sorted by token length, so batches carry little padding.
Torch and transformers load on first use. Deliberately not here: search (retrieve.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from skyrm.errors import ConfigError, ModelError
from skyrm.shipped_models import canonical_name, minilm_dir
from skyrm.records import Attributes, Pair
from skyrm.runs import Meter, Progress, tracked_run
from skyrm.text import render_plain

DEFAULT_MODEL = "minilm"
RECIPES = {"prompt": "prompt@1", "prompt+attributes": "prompt+attributes@1"}
DEFAULT_WHAT = "prompt+attributes"
MAX_LENGTH_CAP = 512
_FILES = ("*.safetensors", "*.bin", "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
          "special_tokens_map.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json")


# ------------------------------------------------------------------ texts
def attributes_text(attributes: Attributes) -> str:
    return (f"Task: {attributes.task_category}; {attributes.objectivity}; "
            f"controversiality: {attributes.controversiality}.\n"
            f"A good response: {attributes.desired_attributes}\nGuideline: {attributes.guideline}")


def embedding_text(pair: Pair, attributes: Attributes | None, what: str = DEFAULT_WHAT) -> str:
    """The text a recipe embeds for a pair (see the module docstring)."""
    if what not in RECIPES:
        raise ConfigError(f"--what must be one of {', '.join(RECIPES)}, got {what!r}")
    text = render_plain(pair.prompt)
    if what == "prompt+attributes" and attributes is not None:
        text += "\n\n" + attributes_text(attributes)
    return text


# ---------------------------------------------------------------- encoder
@dataclass(frozen=True)
class EncoderSpec:
    """Where an encoder's files are and how it pools, known without loading torch."""

    name: str
    path: str
    pooling: str  # "mean" or "cls"
    max_length: int
    lowercase: bool
    fingerprint: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _encoder_dir(name: str) -> Path:
    key = canonical_name(name)
    if key == "minilm":
        return minilm_dir()
    if key is not None:
        raise ConfigError(f"'{name}' is a decoder, not a sentence encoder: use minilm, an encoder directory "
                          "or a hub name")
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists() or name.startswith((".", "/", "~")):
        raise ModelError(f"{name}: not an encoder directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name))
    except Exception as exc:  # offline without a cached copy, unknown repo, …
        raise ModelError(f"cannot find the encoder '{name}' locally or on the hub ({type(exc).__name__}); "
                         "give a local directory, or 'minilm' for the offline MiniLM") from exc


def encoder_spec(name: str = DEFAULT_MODEL) -> EncoderSpec:
    """Resolve an encoder name and fingerprint its files and settings (no torch)."""
    from skyrm.rm.checkpoint import fingerprint

    root = _encoder_dir(name)
    # A sentence-transformers directory names its modules; older ones keep the transformer in
    # a subfolder ("0_Transformer"). A plain transformers directory has no modules.json.
    modules = _read_json(root / "modules.json") if (root / "modules.json").is_file() else []
    paths = {str(m.get("type", "")).rsplit(".", 1)[-1]: m.get("path", "") for m in modules
             if isinstance(m, dict)} if isinstance(modules, list) else {}
    directory = root / paths["Transformer"] if paths.get("Transformer") else root
    if not (directory / "config.json").is_file():
        raise ModelError(f"{directory}: no config.json, not a transformers encoder directory")
    pooling_cfg = _read_json(root / (paths.get("Pooling") or "1_Pooling") / "config.json")
    if pooling_cfg.get("pooling_mode_max_tokens") or pooling_cfg.get("pooling_mode_mean_sqrt_len_tokens"):
        raise ModelError(f"{directory}: only mean or CLS pooling is supported")
    pooling = "cls" if pooling_cfg.get("pooling_mode_cls_token") and not pooling_cfg.get(
        "pooling_mode_mean_tokens") else "mean"
    st_cfg = _read_json(directory / "sentence_bert_config.json") or _read_json(root / "sentence_bert_config.json")
    if st_cfg.get("max_seq_length"):
        max_length = int(st_cfg["max_seq_length"])
    else:
        limits = [_read_json(directory / "config.json").get("max_position_embeddings"),
                  _read_json(directory / "tokenizer_config.json").get("model_max_length"), MAX_LENGTH_CAP]
        max_length = min(int(x) for x in limits if isinstance(x, (int, float)) and 0 < x < 10**7)
    lowercase = bool(st_cfg.get("do_lower_case", False))
    files = sorted({f for base in {root, directory} for pattern in _FILES for f in base.glob(pattern) if f.is_file()})
    settings = {"pooling": pooling, "max_length": max_length, "lowercase": lowercase, "normalize": True}
    return EncoderSpec(name, str(directory), pooling, max_length, lowercase, fingerprint(files, settings))


class Encoder:
    """A loaded sentence encoder: ``encode(texts)`` gives normalised float32 vectors in input order."""

    def __init__(self, spec: EncoderSpec, *, device: str | None = None, batch_size: int = 64):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.spec = spec
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(spec.path)
        self.model = AutoModel.from_pretrained(spec.path).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self.truncated = 0

    def encode(self, texts: Sequence[str]) -> Any:
        """An (n, dim) float32 numpy array; texts longer than ``max_length`` tokens are cut at the end."""
        import numpy as np
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        inputs = [t.lower() for t in texts] if self.spec.lowercase else list(texts)
        encoded = self.tokenizer(inputs, truncation=True, max_length=self.spec.max_length)
        # A fast tokenizer keeps what truncation cut as `overflowing`: count it without a second pass.
        self.truncated += sum(bool(getattr(e, "overflowing", None)) for e in (encoded.encodings or []))
        keys = list(encoded.keys())
        order = sorted(range(len(texts)), key=lambda i: (-len(encoded["input_ids"][i]), i))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = self.tokenizer.pad({k: [encoded[k][i] for i in rows] for k in keys}, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self.model(**batch).last_hidden_state
                if self.spec.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
                out[rows] = pooled.cpu().numpy()
        return out


def vector_blob(vector: Any) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype="<f4").tobytes()


def blob_vector(blob: bytes) -> Any:
    import numpy as np

    return np.frombuffer(blob, dtype="<f4")


# --------------------------------------------------------------- the run
@dataclass(frozen=True)
class EmbedConfig:
    model: str = DEFAULT_MODEL
    pool: str = "all"
    what: str = DEFAULT_WHAT
    batch_size: int = 64
    chunk: int = 1024  # pairs per transaction: what a kill can cost
    limit: int | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.what not in RECIPES:
            raise ConfigError(f"--what must be one of {', '.join(RECIPES)}, got {self.what!r}")
        if self.batch_size < 1 or self.chunk < 1:
            raise ConfigError("--batch-size and chunk must be at least 1")

    @property
    def recipe(self) -> str:
        return RECIPES[self.what]


def embed_pool(store: Any, config: EmbedConfig, *, progress: Progress | None = None,
               encoder: Encoder | None = None) -> dict[str, Any]:
    """Embed the pool's pairs that have no current vector for this encoder and recipe.

    Under ``accelerate launch`` every process encodes its slice of each block of ``chunk`` pairs
    per process and rank 0 alone reads and writes the store (``skyrm.parallel``); the other ranks
    return None.
    """
    from skyrm.parallel import process_group, split

    group = process_group(config.device)
    spec = encoder.spec if encoder is not None else encoder_spec(config.model)
    if not group.main:
        if group.broadcast(None):
            _embed_worker(group, encoder or Encoder(spec, device=group.device or config.device,
                                                    batch_size=config.batch_size))
        return None  # type: ignore[return-value]
    recipe = config.recipe
    with_attributes = config.what == "prompt+attributes"
    todo = store.count_embedding_todo(spec.fingerprint, recipe, config.pool, with_attributes=with_attributes)
    if config.limit is not None:
        todo = min(todo, config.limit)
    result: dict[str, Any] = {"model": config.model, "path": spec.path, "fingerprint": spec.fingerprint,
                              "recipe": recipe, "pool": config.pool, "todo": todo, "embedded": 0,
                              "truncated": 0, "dim": None, "load_seconds": 0.0, "seconds": 0.0,
                              "texts_per_s": None}
    meter = Meter(progress, todo)
    if not group.broadcast(todo):
        return {**result, "run_id": None}
    run_config = {**asdict(config), "recipe": recipe, "encoder": spec.as_dict()}
    if group.world > 1:
        run_config["world_size"] = result["world_size"] = group.world
    block_size = config.chunk * group.world
    released = False
    with tracked_run(store, "embed", run_config) as run:
        try:
            encoder = encoder or Encoder(spec, device=group.device or config.device, batch_size=config.batch_size)
            result["dim"] = encoder.dim
            result["load_seconds"] = round(meter.seconds, 3)
            meter.started = time.perf_counter()  # texts/s counts embedding and storing, not loading the model
            done, last = 0, ""
            while done < todo:  # keyset pages of the ids to embed: the pool's id list is never held
                ids = store.embedding_todo(spec.fingerprint, recipe, config.pool, with_attributes=with_attributes,
                                           limit=min(block_size, todo - done), after=last)
                if not ids:
                    break
                last = ids[-1]
                pairs = store.get_pairs(ids)
                attributes = store.get_attributes_many(ids) if with_attributes else {}
                attribute_ids = store.latest_attribute_ids(ids) if with_attributes else {}
                texts = [embedding_text(pairs[i], attributes.get(i), config.what) for i in ids]
                vectors, truncated = _encode_block(group, encoder, split(texts, group.world))
                result["truncated"] += truncated
                result["embedded"] += store.put_embeddings(
                    (pid, config.model, recipe, spec.fingerprint, attribute_ids.get(pid), encoder.dim,
                     vector_blob(vec)) for pid, vec in zip(ids, vectors))
                done += len(ids)
                meter.advance(done, f"{meter.per_second(result['embedded']):.0f} texts/s")
            released = True
            group.scatter([None] * group.world)  # the end of the work
        finally:  # a failed or interrupted run keeps its partial figures
            if not released and group.world > 1:
                group.scatter([None] * group.world)  # an error on rank 0 must not leave the others waiting
            seconds = meter.seconds
            result["seconds"] = round(seconds, 3)
            result["texts_per_s"] = round(result["embedded"] / seconds, 2) if seconds > 0 else None
            run.metrics = {k: v for k, v in result.items() if k != "path"}
    return {**result, "run_id": run.id}


def _encode_block(group: Any, encoder: Encoder, parts: list[list[str]]) -> tuple[Any, int]:
    """Rank 0's side of one block: every rank encodes its slice; the vectors in block order, and how
    many texts were cut."""
    import numpy as np

    mine = group.scatter(parts)
    before = encoder.truncated
    own = (encoder.encode(mine), encoder.truncated - before)
    gathered = group.gather(own)
    return np.concatenate([vectors for vectors, _ in gathered]), sum(cut for _, cut in gathered)


def _embed_worker(group: Any, encoder: Encoder) -> None:
    """A rank other than 0: encode each slice rank 0 sends until it sends None."""
    while True:
        texts = group.scatter(None)
        if texts is None:
            return
        before = encoder.truncated
        group.gather((encoder.encode(texts), encoder.truncated - before))
