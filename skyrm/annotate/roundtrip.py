"""File round trip for teams that label elsewhere (spreadsheets, Label Studio).

``export_batch`` writes the next ``n`` pairs of the annotation queue (same priority as the
terminal; pairs another annotator has on screen are left out) as CSV, JSONL, or Label Studio
task JSON (``.ls.json``, with its labelling config written beside it as ``.ls.xml``). Each row
holds the pair id, a batch token, the attributes, any pre-verification hint, the rules of the
protocol that apply, the rendered conversation and the two candidates in the order shown, and
empty ``verdict`` and ``note`` columns. Which stored side is Candidate 1 is a seeded coin of
(batch token, pair id), so the file does not reveal the stored orientation and any copy of the
store can read the answers back.

``import_batch`` reads a filled file back: verdict ``1`` / ``2`` (that candidate is better),
``tie`` / ``t``, ``skip`` / ``s`` (cannot decide: the pair is discarded), or empty (not labelled
yet, left alone). Every row is checked first: unknown pair ids, a missing batch token, bad
verdicts, a pair given twice, candidate text that is not the pair's (a re-sorted sheet) are
errors naming the file, line (CSV: the spreadsheet row, header = row 1; Label Studio: the task's
index) and field. With ``strict``
nothing is stored when any row is bad; otherwise the good rows are stored and the bad ones
reported. Labels are ``human`` labels of ``annotator:NAME`` with a dedup key, so importing the
same file twice stores nothing new. Deliberately not here: printing, choosing file names.
Why it is longer than 400 lines: three file formats, each written and read back, share one
row layout and one coin for the candidate order; apart, the two directions could drift.
"""

from __future__ import annotations

import csv
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skyrm.annotate import check_annotator, producer_for
from skyrm.annotate.protocol import Protocol, load_protocol
from skyrm.annotate.queue import QUEUE, select_candidates
from skyrm.annotate.session import first_side
from skyrm.errors import InputError
from skyrm.records import Label, content_hash
from skyrm.store import Store
from skyrm.text import render_plain

COLUMNS = ("pair_id", "batch", "task_category", "objectivity", "controversiality", "desired_attributes",
           "guideline", "hint", "rules", "conversation", "candidate_1", "candidate_2", "verdict", "note")
VERDICTS = {"1": "1", "2": "2", "tie": "t", "t": "t", "skip": "s", "s": "s"}
LS_CHOICES = {"Candidate 1": "1", "Candidate 2": "2", "Tie": "t", "Cannot decide": "s"}
_BATCH = re.compile(r"[0-9a-f]{12}")

LS_CONFIG = """<View>
  <Header value="Pair $pair_id: read the conversation, both candidates and the rules"/>
  <Text name="about" value="$about"/>
  <Header value="Conversation"/>
  <Text name="conversation" value="$conversation"/>
  <Header value="Candidate 1"/>
  <Text name="candidate_1" value="$candidate_1"/>
  <Header value="Candidate 2"/>
  <Text name="candidate_2" value="$candidate_2"/>
  <Header value="Protocol"/>
  <Text name="rules" value="$rules"/>
  <Choices name="verdict" toName="conversation" choice="single" showInline="true" required="true">
    <Choice value="Candidate 1"/>
    <Choice value="Candidate 2"/>
    <Choice value="Tie"/>
    <Choice value="Cannot decide"/>
  </Choices>
  <TextArea name="note" toName="conversation" rows="2" placeholder="How did you check? (optional)"/>
</View>
"""


def file_kind(path: str | Path) -> str:
    name = str(path).lower()
    if name.endswith(".ls.json"):
        return "labelstudio"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".jsonl"):
        return "jsonl"
    raise InputError(f"{path}: unknown file type: use .csv, .jsonl or .ls.json (Label Studio)")


def _other(side: str) -> str:
    return "rejected" if side == "chosen" else "chosen"


def _text(messages: list[dict[str, Any]]) -> str:
    return render_plain(messages).removeprefix("Assistant: ") if len(messages) == 1 else render_plain(messages)


@dataclass
class ExportSummary:
    path: str
    format: str
    pairs: int
    batch: str
    source: str
    config: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_batch(store: Store, path: str | Path, *, n: int = 200, pool: str = QUEUE,
                 protocol: Protocol | None = None, batch: str | None = None) -> ExportSummary:
    """Write the next ``n`` pairs to annotate into ``path`` (format from its name)."""
    kind = file_kind(path)
    if n < 1:
        raise InputError("--n must be at least 1")
    protocol = protocol or load_protocol()
    batch = batch or secrets.token_hex(6)
    candidates = select_candidates(store, pool)
    held = {claim["pair_id"] for claim in store.claims()}
    ids = [i for i in candidates.ids if i not in held][:n]
    if not ids:
        raise InputError(f"no pairs to export from {candidates.source}")
    pairs = store.get_pairs(ids)
    attributes = store.get_attributes_many(ids)
    rows = []
    for pair_id in ids:
        pair, attrs = pairs[pair_id], attributes.get(pair_id)
        first = first_side(batch, "", pair_id)
        sides = {"chosen": pair.chosen, "rejected": pair.rejected}
        hints = []
        for hint in store.hints_for(pair_id):
            if hint.get("p") is not None:
                number = 1 if hint["side"] == first else 2
                hints.append(f"Candidate {number}: P({hint['kind']}) = {hint['p']:.2f} by {hint['producer']}")
        rows.append({
            "pair_id": pair_id, "batch": batch,
            "task_category": attrs.task_category if attrs else "", "objectivity": attrs.objectivity if attrs else "",
            "controversiality": attrs.controversiality if attrs else "",
            "desired_attributes": attrs.desired_attributes if attrs else "", "guideline": attrs.guideline if attrs else "",
            "hint": "; ".join(hints) + (" (an LLM's guess: check it, never copy it)" if hints else ""),
            "rules": "\n\n".join(f"{title}\n{body}" for title, body in protocol.rules_for(attrs)),
            "conversation": render_plain(pair.prompt),
            "candidate_1": _text(sides[first]), "candidate_2": _text(sides[_other(first)]),
            "verdict": "", "note": ""})
    target = Path(path)
    if not target.parent.is_dir():
        raise InputError(f"{target}: directory {target.parent} does not exist")
    config = None
    if kind == "csv":
        with open(target, "w", encoding="utf-8-sig", newline="") as handle:  # the BOM makes Excel read UTF-8
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    elif kind == "jsonl":
        with open(target, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        tasks = []
        for row in rows:
            data = dict(row)
            del data["verdict"], data["note"]
            data["about"] = (f"{row['task_category'] or 'no attributes'} · {row['objectivity']} · "
                             f"controversiality {row['controversiality']}\ndesired: {row['desired_attributes']}\n"
                             f"guideline: {row['guideline']}" + (f"\nhint: {row['hint']}" if row["hint"] else ""))
            tasks.append({"data": data})
        target.write_text(json.dumps(tasks, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        config = str(target.with_name(target.name.removesuffix(".json") + ".xml"))
        Path(config).write_text(LS_CONFIG, encoding="utf-8")
    return ExportSummary(str(target), kind, len(rows), batch, candidates.source, config)


# ------------------------------------------------------------------ import
@dataclass
class Row:
    """One answer read from a file, before validation."""

    line: int | None  # CSV: the spreadsheet row (header = 1); JSONL: the line
    element: int | None  # Label Studio task index
    pair_id: str
    batch: str
    verdict: str
    note: str = ""
    seconds: float | None = None
    candidate_1: str | None = None
    candidate_2: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportSummary:
    path: str
    format: str
    annotator: str
    rows: int = 0
    answered: int = 0
    unanswered: int = 0
    labels_new: int = 0
    already_imported: int = 0
    bad_rows: int = 0
    errors: list[str] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _error(path: Path, row: Row | None, field_: str | None, message: str, line: int | None = None) -> InputError:
    return InputError(message, path=str(path), line=line if row is None else row.line,
                      element=None if row is None else row.element, field=field_)


def _read_csv(path: Path) -> Iterator[Row | InputError]:
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", path=str(path)) from exc
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"not a readable CSV file ({exc})", path=str(path), line=1) from exc
        if not header:
            raise InputError("the file has no rows", path=str(path))
        header = [h.strip().lower() for h in header]
        missing = [c for c in ("pair_id", "batch", "verdict") if c not in header]
        if missing:
            raise InputError(f"the header has no {', '.join(repr(m) for m in missing)} column "
                             f"(columns: {', '.join(header)}); export with 'skyrm annotate export'",
                             path=str(path), line=1)
        index = {name: header.index(name) for name in header}
        # Positions are spreadsheet rows (the header is row 1), not physical lines: the conversation
        # and rules cells span many lines, and a spreadsheet shows one row per record.
        start = 1
        while True:
            start += 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield InputError(f"cannot parse the row ({exc})", path=str(path), line=start)
                return
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                yield InputError(f"{len(record)} cells where the header has {len(header)}", path=str(path), line=start)
                continue

            def cell(name: str, record: list[str] = record) -> str | None:
                return record[index[name]] if name in index else None

            seconds = (cell("seconds") or "").strip()
            try:
                taken = float(seconds) if seconds else None
            except ValueError:
                yield InputError(f"{seconds!r} is not a number of seconds", path=str(path), line=start,
                                 field="seconds")
                continue
            yield Row(start, None, (cell("pair_id") or "").strip(), (cell("batch") or "").strip(),
                      (cell("verdict") or "").strip(), (cell("note") or "").strip(), taken,
                      cell("candidate_1"), cell("candidate_2"))


def _read_jsonl(path: Path) -> Iterator[Row | InputError]:
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", path=str(path)) from exc
    with handle:
        for number, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield InputError(f"invalid JSON ({exc.msg} at column {exc.colno})", path=str(path), line=number)
                continue
            if not isinstance(obj, dict):
                yield InputError("a row must be a JSON object", path=str(path), line=number)
                continue
            bad = next((k for k in ("pair_id", "batch", "verdict", "note") if obj.get(k) is not None
                        and not isinstance(obj[k], (str, int))), None)
            if bad:
                yield InputError(f"must be a string, not {type(obj[bad]).__name__}", path=str(path), line=number,
                                 field=bad)
                continue
            seconds = obj.get("seconds")
            if seconds is not None and not isinstance(seconds, (int, float)):
                yield InputError("must be a number", path=str(path), line=number, field="seconds")
                continue
            yield Row(number, None, str(obj.get("pair_id") or "").strip(), str(obj.get("batch") or "").strip(),
                      str(obj.get("verdict") if obj.get("verdict") is not None else "").strip(),
                      str(obj.get("note") or "").strip(), seconds, obj.get("candidate_1"), obj.get("candidate_2"))


def _read_labelstudio(path: Path) -> Iterator[Row | InputError]:
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", path=str(path)) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not a Label Studio JSON export ({exc})", path=str(path)) from exc
    if not isinstance(tasks, list):
        raise InputError("a Label Studio export is a JSON array of tasks", path=str(path))
    for index, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            yield InputError("a task without a 'data' object", path=str(path), element=index, field="data")
            continue
        annotations = [a for a in (task.get("annotations") or task.get("completions") or [])
                       if isinstance(a, dict) and not a.get("was_cancelled")]
        verdict, note, seconds, extra = "", "", None, {}
        if annotations:
            annotation = annotations[-1]  # the latest answer to the task
            for result in annotation.get("result") or []:
                value = result.get("value") or {}
                if result.get("from_name") == "verdict" or "choices" in value:
                    choices = value.get("choices") or []
                    if len(choices) != 1 or choices[0] not in LS_CHOICES:
                        verdict = "?" + json.dumps(choices, ensure_ascii=False)
                    else:
                        verdict = LS_CHOICES[choices[0]]
                elif result.get("from_name") == "note" or "text" in value:
                    text = value.get("text")
                    note = " ".join(text) if isinstance(text, list) else str(text or "")
            lead = annotation.get("lead_time")
            seconds = float(lead) if isinstance(lead, (int, float)) else None
            extra = {"labelstudio_task": task.get("id"), "completed_by": annotation.get("completed_by")}
        yield Row(None, index, str(data.get("pair_id") or "").strip(), str(data.get("batch") or "").strip(),
                  verdict, note.strip(), seconds, data.get("candidate_1"), data.get("candidate_2"), extra)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _same_text(cell: str, stored: str) -> bool:
    cell, stored = _squash(cell), _squash(stored)
    # A spreadsheet cuts a long cell at its limit: a long cell that starts the text is the text.
    return cell == stored or (len(cell) >= 1000 and stored.startswith(cell))


def import_batch(store: Store, path: str | Path, *, annotator: str, strict: bool = False,
                 protocol: Protocol | None = None) -> ImportSummary:
    """Read a filled export back as human labels (see the module docstring)."""
    check_annotator(annotator)
    target = Path(path)
    kind = file_kind(target)
    if not target.is_file():
        raise InputError(f"{target}: no such file")
    protocol = protocol or load_protocol()
    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "labelstudio": _read_labelstudio}[kind]
    summary = ImportSummary(str(target), kind, annotator)
    errors: list[InputError] = []
    good: list[tuple[Row, str, str]] = []  # (row, verdict, first side)
    seen: dict[str, str] = {}
    rows: list[Row] = []
    for item in reader(target):
        summary.rows += 1
        if isinstance(item, InputError):
            errors.append(item)
        else:
            rows.append(item)
    pairs = store.get_pairs({r.pair_id for r in rows if r.pair_id})
    for row in rows:
        where = f"line {row.line}" if row.line is not None else f"element {row.element}"
        if not row.pair_id:
            errors.append(_error(target, row, "pair_id", "missing"))
            continue
        if row.pair_id in seen:
            errors.append(_error(target, row, "pair_id", f"pair {row.pair_id} appears twice (first at {seen[row.pair_id]}): "
                                 "keep one row per pair"))
            continue
        seen[row.pair_id] = where
        if row.pair_id not in pairs:
            errors.append(_error(target, row, "pair_id", f"unknown pair id {row.pair_id!r}: not in this store "
                                 f"({store.path})"))
            continue
        if not _BATCH.fullmatch(row.batch):
            errors.append(_error(target, row, "batch", f"{row.batch!r} is not the batch token the export wrote "
                                 "(12 hex digits): without it the order shown is unknown"))
            continue
        if not row.verdict:
            summary.unanswered += 1
            continue
        key = VERDICTS.get(row.verdict.lower())
        if key is None:
            errors.append(_error(target, row, "verdict", f"{row.verdict!r} is not a verdict: use 1, 2, tie, skip"
                                 + (" (Candidate 1, Candidate 2, Tie, Cannot decide)" if kind == "labelstudio" else "")
                                 + " or leave it empty"))
            continue
        pair = pairs[row.pair_id]
        first = first_side(row.batch, "", row.pair_id)
        sides = {"chosen": pair.chosen, "rejected": pair.rejected}
        mismatch = next((name for name, cell, side in (("candidate_1", row.candidate_1, first),
                                                        ("candidate_2", row.candidate_2, _other(first)))
                         if isinstance(cell, str) and cell.strip() and not _same_text(cell, _text(sides[side]))), None)
        if mismatch:
            errors.append(_error(target, row, mismatch, f"is not the text exported for pair {row.pair_id} in batch "
                                 f"{row.batch} (were the rows re-sorted or edited?)"))
            continue
        verdict = {"1": first, "2": _other(first), "t": "tie", "s": "skip"}[key]
        good.append((row, verdict, first))
    summary.bad_rows = len(errors)
    summary.errors = [str(e) for e in errors]
    if errors and strict:
        raise InputError(f"{errors[0]}; {len(errors)} bad row(s) in all; nothing was stored (--strict)")
    producer = producer_for(annotator)
    labels, keys = [], []
    for row, verdict, first in good:
        detail = {"annotator": annotator, "via": "import", "file": target.name, "format": kind, "batch": row.batch,
                  "candidate_1": first, "note": row.note, "protocol": protocol.version, **row.extra}
        if row.line is not None:
            detail["line"] = row.line
        else:
            detail["element"] = row.element
        if row.seconds is not None:
            detail["seconds"] = row.seconds
        labels.append(Label(row.pair_id, "human", producer, verdict, None, protocol.version, f"{first}-first", 0,
                            detail))
        keys.append("annotate-import:" + content_hash([producer, row.pair_id, row.batch, verdict, row.note], 40))
        summary.verdicts[verdict] = summary.verdicts.get(verdict, 0) + 1
    summary.answered = len(good)
    summary.labels_new = store.add_labels(labels, dedup_keys=keys) if labels else 0
    summary.already_imported = len(labels) - summary.labels_new
    return summary


__all__ = ["export_batch", "import_batch", "ExportSummary", "ImportSummary", "COLUMNS", "file_kind"]
