"""Writing pairs in the exchange shapes TRL, OpenRLHF and LLaMA-Factory read, to .jsonl(.gz) or Parquet.

Deliberately not here: which pairs (``skyrm.ingest``), reading (``files.py``).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import IO, Any

from skyrm.errors import InputError
from skyrm.formats.files import base_suffix
from skyrm.records import Pair

SHAPES = ("trl", "hf", "openrlhf", "sharegpt")


def pair_to_row(pair: Pair, shape: str) -> dict[str, Any]:
    """A pair in an exchange shape that TRL, OpenRLHF or LLaMA-Factory read."""
    if shape == "trl":
        return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
    if shape == "hf":
        return {"chosen": pair.prompt + pair.chosen, "rejected": pair.prompt + pair.rejected}
    if shape == "openrlhf":
        # OpenRLHF's reward datasets: prompt + chosen/rejected as message lists (apply_chat_template).
        return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
    if shape == "sharegpt":
        if len(pair.chosen) != 1 or len(pair.rejected) != 1:
            raise InputError("the sharegpt shape holds one message per response; use --shape trl")
        return {"conversations": [{"from": m["role"], "content": m["content"]} for m in pair.prompt],
                "chosen": {"from": "assistant", "content": pair.chosen[0]["content"]},
                "rejected": {"from": "assistant", "content": pair.rejected[0]["content"]}}
    raise InputError(f"unknown shape '{shape}' (choose from {', '.join(SHAPES)})")


SHAPE_TO_FORMAT = {"trl": "trl", "hf": "hf", "openrlhf": "trl", "sharegpt": "sharegpt"}


class PairWriter:
    """Write rows to .jsonl or .parquet (optionally .jsonl.gz), chosen by the file name."""

    def __init__(self, path: str | os.PathLike[str], batch_rows: int = 2048):
        self.path = Path(path)
        self.kind = base_suffix(self.path)
        if self.kind not in (".jsonl", ".parquet"):
            raise InputError("export writes .jsonl, .jsonl.gz or .parquet", path=str(self.path))
        self._rows: list[dict[str, Any]] = []
        self._batch = batch_rows
        self._writer: Any = None
        self._text: IO[str] | None = None
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".part")
        if self.kind == ".jsonl":
            self._text = (gzip.open(self._tmp, "wt", encoding="utf-8") if self.path.suffix == ".gz"
                          else open(self._tmp, "w", encoding="utf-8"))

    def write(self, row: dict[str, Any]) -> None:
        self.count += 1
        if self._text is not None:
            self._text.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        self._rows.append(row)
        if len(self._rows) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows:
            return
        table = pa.Table.from_pylist(self._rows)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        self._writer.write_table(table.cast(self._writer.schema))
        self._rows = []

    def close(self) -> None:
        """Finish the file and move it into place (a crash leaves only a .part file)."""
        if self._text is not None:
            self._text.close()
        else:
            self._flush()
            if self._writer is None:
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({}), self._tmp)
            else:
                self._writer.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Close without moving the file into place, and remove the partial file: a failed export writes nothing."""
        try:
            if self._text is not None:
                self._text.close()
            elif self._writer is not None:
                self._writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)
