"""The real terminal UI: `python -m skyrm annotate` in a pseudo-terminal, its 80x24 screen read by pyte.

Label, undo, skip, note, quit, resume; scrolling a long response; two annotators at once on one
store; and the acceptance path on real data: import hh-rlhf, label some pairs by file round trip
and some in the terminal, see them in `skyrm status` and in the gold pool.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")
pyte = pytest.importorskip("pyte")

from skyrm.records import Attributes, Pair  # noqa: E402
from skyrm.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Tty:
    """`python -m skyrm ARGS` in a pseudo-terminal of ``columns`` x ``rows``, its screen emulated."""

    def __init__(self, args: list[str], columns: int = 80, rows: int = 24):
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        env.update(TERM="xterm-256color", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(sys.executable, ["-m", "skyrm", *args], env=env, cwd=str(ROOT),
                                   dimensions=(rows, columns), timeout=30)

    def pump(self, quiet: float = 0.15) -> None:
        while True:
            try:
                data = self.child.read_nonblocking(65536, timeout=quiet)
            except pexpect.TIMEOUT:
                return
            except pexpect.EOF:
                return
            self.stream.feed(data)

    @property
    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            found = re.search(pattern, self.text)
            if found:
                return found
            if not self.child.isalive():
                self.pump()
                found = re.search(pattern, self.text)
                if found:
                    return found
                break
        raise AssertionError(f"{pattern!r} not on the screen:\n{self.text}")

    def press(self, keys: str, then: str | None = None) -> re.Match | None:
        self.child.send(keys)
        return self.wait_for(then) if then else None

    def header_pair(self) -> str:
        return self.wait_for(r"pair ([0-9a-f]{8})").group(1)

    def close(self) -> int:
        self.child.expect(pexpect.EOF, timeout=30)
        self.child.close()
        return self.child.exitstatus


def short_pairs() -> list[Pair]:
    return [Pair(prompt=[{"role": "user", "content": f"What is {i} + {i}? Answer with a number."}],
                 chosen=[{"role": "assistant", "content": f"The answer is {2 * i}."}],
                 rejected=[{"role": "assistant", "content": f"I think it is {2 * i + 1}."}], source="sums")
            for i in range(1, 5)]


@pytest.fixture
def sums_db(tmp_path):
    db = tmp_path / "sums.db"
    with Store(db) as store:
        pairs = short_pairs()
        store.add_pairs(pairs)
        store.add_attributes(pairs[2].id, Attributes("math", "objective", "low", "the correct sum",
                                                     "Check the arithmetic."), producer="t")
        store.add_hints([{"pair_id": pairs[2].id, "side": "chosen", "producer": "llamacpp:smollm2", "p": 0.87}])
    return db, {p.id: p for p in pairs}


def candidate_text(tty: Tty, number: int) -> str:
    """The first line under the 'Candidate N' rule."""
    lines = tty.text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"Candidate {number} ─"):
            return lines[i + 1].strip()
    raise AssertionError(f"Candidate {number} not on the screen:\n{tty.text}")


def full_id(short: str, pairs: dict[str, Pair]) -> str:
    return next(i for i in pairs if i.startswith(short))


def test_label_undo_skip_note_quit_resume(sums_db):
    db, pairs = sums_db
    tty = Tty(["annotate", "--annotator", "alice", "--pool", "all", "--db", str(db)])
    tty.wait_for(r"0 answered")
    first = full_id(tty.header_pair(), pairs)
    objective = next(i for i, p in pairs.items() if "3 + 3" in p.prompt[0]["content"])
    assert first == objective  # objective, low-controversiality first
    screen = tty.text
    for expected in ("task math  ·  objective  ·  controversiality low", "guideline: Check the arithmetic.",
                     "User: What is 3 + 3? Answer with a number.", "Candidate 1 ─", "Candidate 2 ─",
                     "1 2 better  t tie  s can't decide  u undo  n note  q quit"):
        assert expected in screen, screen
    hint = tty.wait_for(r"hint Candidate (\d): P\(correct\) = 0\.87").group(1)
    shown_first = candidate_text(tty, 1)
    chosen_first = shown_first == "The answer is 6."
    assert shown_first == ("The answer is 6." if chosen_first else "I think it is 7.")
    assert hint == ("1" if chosen_first else "2")  # the hint follows its response to its candidate number
    tty.press("r", then=r"Category: math")  # the protocol's rules for the pair's category
    # 1: Candidate 1 is better -> relative to the stored orientation.
    tty.press("1", then=r"1 answered")
    assert "stored: Candidate 1 better" in tty.text
    second = full_id(tty.header_pair(), pairs)
    assert second != first
    tty.press("s", then=r"2 answered")
    assert "discarded, as the protocol says" in tty.text
    tty.press("u", then=r"took back: cannot decide")
    assert "1 answered" in tty.text and full_id(tty.header_pair(), pairs) == second
    tty.press("n")
    tty.wait_for(r"note \(Enter keeps, Esc drops\)")
    tty.press("two candidates, checked by hand\r", then=r"note kept: two candidates, checked by hand")
    tty.press("t", then=r"2 answered")
    tty.press("q")
    tty.pump()
    assert tty.close() == 0
    with Store(db) as store:
        label = store.labels_for(first, "human")[-1]
        assert label.verdict == ("chosen" if chosen_first else "rejected")
        assert label.detail["candidate_1"] == ("chosen" if chosen_first else "rejected")
        assert label.order == ("chosen-first" if chosen_first else "rejected-first")
        assert label.detail["annotator"] == "alice" and label.detail["seconds"] > 0
        assert label.producer == "annotator:alice"
        second_labels = store.labels_for(second, "human")
        assert [lb.verdict for lb in second_labels] == ["skip", "tie"]  # the skip stays, withdrawn
        assert second_labels[-1].detail["note"] == "two candidates, checked by hand"
        assert store.pair_status(second)["pool"] == "gold" and store.pair_status(first)["pool"] == "gold"
        assert store.claims() == []  # quitting released the pair on screen
    # Restart: continues with a pair alice has not answered.
    tty = Tty(["annotate", "--annotator", "alice", "--pool", "all", "--db", str(db)])
    tty.wait_for(r"0 answered")
    third = full_id(tty.header_pair(), pairs)
    assert third not in (first, second)
    tty.press("2", then=r"1 answered")
    fourth = full_id(tty.header_pair(), pairs)
    tty.press("1", then=r"2 answered")
    tty.wait_for(r"Done: no pair left in pool 'all' for alice")
    tty.press("q")
    tty.pump()
    assert tty.close() == 0
    # pyte has no alternate screen: the summary printed after the UI left it lands below the last frame.
    assert "annotate: alice stored 2 answer(s) in this session" in " ".join(tty.text.split())
    with Store(db) as store:
        assert {third, fourth} | {first, second} == set(pairs)
        assert store.pool_counts()["gold"] == 4


def test_long_texts_page_and_scroll(tmp_path):
    db = tmp_path / "long.db"
    body = "\n".join(f"step {n}: reasoning line {n}" for n in range(1, 121))
    pair = Pair(prompt=[{"role": "user", "content": "Explain in many steps."}],
                chosen=[{"role": "assistant", "content": body}],
                rejected=[{"role": "assistant", "content": "No."}], source="long")
    with Store(db) as store:
        store.add_pairs([pair])
    tty = Tty(["annotate", "--annotator", "bob", "--db", str(db)])
    total = int(tty.wait_for(r"1-21/(\d+)").group(1))
    assert total > 120
    tty.press(" ", then=r"21-41/")
    tty.press("\x1b[6~", then=r"41-61/")  # PgDn
    tty.press("\x1b[A", then=r"40-60/")  # up arrow
    tty.press("G", then=rf"{total - 20}-{total}/{total}")
    assert "Protocol (protocol@" in tty.text or "Tools" in tty.text
    tty.press("g", then=r"1-21/")
    tty.press("\t", then=r"\d+-\d+/")  # next section
    tty.screen.resize(30, 100)  # the window grows: the body is laid out again for 100x30
    tty.child.setwinsize(30, 100)
    shown = tty.wait_for(r"(\d+)-(\d+)/\d+$")  # the key line is the last of the 30 rows now
    assert int(shown.group(2)) - int(shown.group(1)) + 1 == 27  # 30 rows: header, message and key lines
    rules = [line for line in tty.text.splitlines() if line.startswith(("Conversation ─", "Candidate 1 ─"))]
    assert rules and all(len(line) == 99 for line in rules)  # laid out again at the new width
    tty.press("\x03")  # Ctrl-C: leaves like q, releasing the pair on screen
    assert tty.close() == 0
    with Store(db) as store:
        assert store.claims() == [] and store.human_labels() == []
    empty = Tty(["annotate", "--pool", "gold", "--db", str(db)])
    empty.wait_for(r"error: nothing to annotate in pool 'gold': choose another --pool")
    assert empty.close() == 1


def test_not_a_terminal_is_one_clear_line(sums_db):
    db, _ = sums_db
    run = subprocess.run([sys.executable, "-m", "skyrm", "annotate", "--db", str(db)], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL)
    assert run.returncode == 1
    assert run.stderr.strip() == ("error: skyrm annotate needs a terminal (standard input and output are not one); "
                                  "to label elsewhere use 'skyrm annotate export --to batch.csv'")


def test_two_annotators_at_once_never_share_a_pair(sums_db):
    db, pairs = sums_db
    alice = Tty(["annotate", "--annotator", "alice", "--pool", "all", "--db", str(db)])
    alice.wait_for(r"0 answered")
    bob = Tty(["annotate", "--annotator", "bob", "--pool", "all", "--db", str(db)])
    bob.wait_for(r"0 answered")
    assert alice.header_pair() != bob.header_pair()
    for n in (1, 2):
        a_pair, b_pair = alice.header_pair(), bob.header_pair()
        assert a_pair != b_pair
        alice.press("1", then=rf"{n} answered")
        bob.press("2", then=rf"{n} answered")
    alice.wait_for(r"Done: no pair left")
    bob.wait_for(r"Done: no pair left")
    for tty in (alice, bob):
        tty.press("q")
        assert tty.close() == 0
        assert "locked" not in tty.text
    with Store(db) as store:
        labels = store.human_labels()
        assert len(labels) == 4 and len({lb["pair_id"] for lb in labels}) == 4
    # With --overlap 1, carol is shown the pairs the others labelled, for agreement.
    carol = Tty(["annotate", "--annotator", "carol", "--pool", "all", "--overlap", "1", "--db", str(db)])
    carol.wait_for(r"0 answered")
    for n in range(1, 5):
        carol.press("1", then=rf"{n} answered")
    carol.wait_for(r"Done: no pair left")
    carol.press("q")
    assert carol.close() == 0
    status = json.loads(subprocess.run([sys.executable, "-m", "skyrm", "status", "--json", "--db", str(db)],
                                       capture_output=True, text=True, check=True).stdout)["human"]
    assert {tuple(k["annotators"]): k["pairs"] for k in status["kappa"]} == {
        ("alice", "bob"): 0, ("alice", "carol"): 2, ("bob", "carol"): 2}


def test_acceptance_real_file_terminal_and_round_trip(shared_data, tmp_path):
    """Import real hh-rlhf pairs, label 5 by CSV round trip and 3 in the terminal: both show in status and gold."""
    source = shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    db = tmp_path / "hh.db"
    subprocess.run([sys.executable, "-m", "skyrm", "import", str(source), "--db", str(db)], check=True,
                   capture_output=True)
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        rows_in_file = sum(1 for _ in handle)
    with Store(db) as store:
        assert store.pool_counts()["unverified"] > 0.9 * rows_in_file
    batch = tmp_path / "batch.csv"
    subprocess.run([sys.executable, "-m", "skyrm", "annotate", "export", "--n", "5", "--to", str(batch),
                    "--db", str(db)], check=True, capture_output=True)
    with open(batch, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and all(r["candidate_1"] and r["candidate_2"] for r in rows)
    for row, verdict in zip(rows, ["1", "2", "tie", "skip", "1"]):
        row["verdict"] = verdict
    with open(batch, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run = subprocess.run([sys.executable, "-m", "skyrm", "annotate", "import", str(batch), "--annotator", "team",
                          "--strict", "--db", str(db)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "5 new labels by team" in run.stdout
    tty = Tty(["annotate", "--annotator", "alice", "--limit", "3", "--db", str(db)])
    tty.wait_for(r"0 answered")
    assert "unverified pool" in tty.text
    shown = []
    for n, key in enumerate("12t", 1):
        shown.append(tty.header_pair())
        tty.press(key, then=rf"{n} answered")
    tty.wait_for(r"Done: reached --limit")
    tty.press("q")
    assert tty.close() == 0
    assert not {s for s in shown} & {r["pair_id"][:8] for r in rows}  # exported pairs were labelled already
    status = json.loads(subprocess.run([sys.executable, "-m", "skyrm", "status", "--json", "--db", str(db)],
                                       capture_output=True, text=True, check=True).stdout)
    annotators = {a["annotator"]: a for a in status["human"]["annotators"]}
    assert annotators["alice"]["labels"] == 3 and annotators["alice"]["in_terminal"] == 3
    assert annotators["alice"]["labels_per_hour"] is not None and annotators["alice"]["labels_per_hour"] > 0
    assert annotators["team"]["labels"] == 5 and annotators["team"]["imported"] == 5
    assert status["pools"]["gold"] == 7 and status["pools"]["discarded"] == 1  # the team's skip is discarded
    gold = subprocess.run([sys.executable, "-m", "skyrm", "export", "--pool", "gold", "--to", str(tmp_path / "g.jsonl"),
                           "--json", "--db", str(db)], capture_output=True, text=True, check=True)
    assert json.loads(gold.stdout)["pairs"] == 7
