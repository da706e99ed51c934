"""Embedding and retrieval commands: embed, retrieve."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer
from rich.table import Table

from skyrm.cli._common import DbOption, JsonOption, app, console, open_store, print_json, progress_bar

EmbedModelOption = Annotated[str, typer.Option(
    "--embed-model", help="Sentence encoder whose stored embeddings to search: minilm, a directory or a hub name.")]
WhatOption = Annotated[str, typer.Option(
    "--what", help="Embedded text: prompt (the conversation) or prompt+attributes (plus the pair's attributes).",
    metavar="prompt|prompt+attributes")]


@app.command()
def embed(
    db: DbOption,
    model: Annotated[str, typer.Option(help="Sentence encoder: minilm (offline, default), an encoder "
                                       "directory, or a hub name.")] = "minilm",
    pool: Annotated[str, typer.Option(help="all, a pool name, or a source.")] = "all",
    what: Annotated[str, typer.Option(help="prompt, or prompt+attributes (the conversation then the pair's "
                                      "attributes, when it has them).", metavar="prompt|prompt+attributes")]
    = "prompt+attributes",
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 64,
    chunk: Annotated[int, typer.Option(help="Pairs per commit: at most this much work is lost to a kill.")] = 1024,
    limit: Annotated[Optional[int], typer.Option(help="Embed at most this many pairs.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda if present).")] = None,
    json_: JsonOption = False,
) -> None:
    """Store sentence embeddings of each pair's conversation (and attributes) for retrieval.

    Only pairs without an embedding for this encoder and text recipe are embedded, in
    length-sorted batches committed chunk by chunk: an interrupted run continues where it stopped.
    Runs data-parallel under `accelerate launch --num_processes N [--multi_gpu|--cpu] -m skyrm embed ...`
    (rank 0 alone writes the store).

    Example: skyrm embed --model minilm --what prompt+attributes
    """
    from skyrm.embed import EmbedConfig, embed_pool

    store = open_store(db)
    config = EmbedConfig(model=model, pool=pool, what=what, batch_size=batch_size, chunk=chunk, limit=limit,
                         device=device)
    main = os.environ.get("RANK", "0") == "0"
    with progress_bar("embed", enabled=main and not json_) as progress:
        result = embed_pool(store, config, progress=progress)
    if not main:
        return
    if json_:
        print_json(result)
        return
    console.print(f"embed: {result['embedded']} of {result['todo']} pairs embedded "
                  f"({result['truncated']} cut at the encoder's length) with {result['model']} "
                  f"(fingerprint {result['fingerprint']}), recipe {result['recipe']}, "
                  f"{result['texts_per_s'] or 0:.1f} texts/s", highlight=False, markup=False)


@app.command()
def retrieve(
    db: DbOption,
    model: Annotated[str, typer.Option("--model", help="Reward model that scores the gold pairs: a run "
                                       "directory, checkpoint, exported model or name.")],
    k_max: Annotated[int, typer.Option("--k-max", help="Neighbours for a gold pair the RM gets wrong "
                                       "(p <= 0.5); ceil(k_max (1 - p)) otherwise.")] = 8,
    round_: Annotated[int, typer.Option("--round", help="Curation round recorded on the links.")] = 0,
    embed_model: EmbedModelOption = "minilm",
    what: WhatOption = "prompt+attributes",
    backend: Annotated[str, typer.Option(help="numpy (exact, the pool streamed in blocks: memory flat in pool "
                                         "size) or faiss (faiss-cpu IndexFlatIP over the whole pool).",
                                         metavar="numpy|faiss")] = "numpy",
    dtype: Annotated[str, typer.Option(help="Pool vectors in the search: float32, or float16 (rounded; the "
                                       "numpy search streams the pool from the store in blocks either way, faiss "
                                       "holds it whole).", metavar="float32|float16")] = "float32",
    batch_size: Annotated[int, typer.Option(help="Sequences per RM forward pass when gold pairs need "
                                            "scoring.")] = 16,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda for RM scoring.")] = None,
    json_: JsonOption = False,
) -> None:
    """Pull the unverified pairs most similar to each gold pair, more where the RM is wrong (Stage 1 step 2).

    Each gold pair's p = σ(r(y_w) − r(y_l)) under --model (cached scores reused) sets its k;
    the selected pairs and their links go to the store for `skyrm judge --pool retrieved`.

    Example: skyrm retrieve --model runs/rm1 --k-max 8 --round 1 && skyrm judge --pool retrieved:1
    """
    from skyrm.retrieve import RetrieveConfig, retrieve as run_retrieve

    store = open_store(db)
    config = RetrieveConfig(model=model, k_max=k_max, round=round_, embed_model=embed_model, what=what,
                            backend=backend, dtype=dtype, batch_size=batch_size, device=device)
    with progress_bar("retrieve", enabled=not json_) as progress:
        result = run_retrieve(store, config, progress=progress, include_links=json_)
    if json_:
        print_json(result)
        return
    table = Table("metric", "value")
    for key in ("run_id", "round", "scores", "gold", "gold_unscored", "gold_without_embedding", "queries",
                "rm_wrong", "mean_p", "k_histogram", "k_requested", "pool_searched",
                "pool_unsearched", "links", "new_links", "selected", "seconds"):
        if key in result and result[key] is not None:
            table.add_row(key, str(result[key]))
    console.print(table)
    console.print(f"next: skyrm judge --pool retrieved:{result['round']}", highlight=False)
