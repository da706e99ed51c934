"""Human annotation without a terminal: kappa, queue priority, claims, the session state machine, status."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest

from skyrm.annotate import AnnotationError
from skyrm.annotate.agreement import cohen_kappa, human_status, throughput
from skyrm.annotate.protocol import load_protocol
from skyrm.annotate.queue import Queue, QueueConfig, in_overlap, priority_key, select_candidates
from skyrm.annotate.session import Session, first_side, verdict_for
from skyrm.errors import InputError, StoreError
from skyrm.records import Attributes, Label, Pair


def make_pair(i: int) -> Pair:
    return Pair(prompt=[{"role": "user", "content": f"question {i}"}],
                chosen=[{"role": "assistant", "content": f"good {i}"}],
                rejected=[{"role": "assistant", "content": f"bad {i}"}], source="s")


def attrs(objectivity: str, controversiality: str, category: str = "math") -> Attributes:
    return Attributes(category, objectivity, controversiality, "a correct answer", "check the arithmetic")


@pytest.fixture
def pairs(store):
    made = [make_pair(i) for i in range(6)]
    store.add_pairs(made)
    return [p.id for p in made]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ kappa
def test_cohen_kappa_hand_computed():
    # 10 pairs. Both 'chosen' on 4, A chosen / B rejected on 2, A rejected / B chosen on 1, both rejected on 3.
    # p_o = 7/10 = 0.7. A: 6 chosen, 4 rejected; B: 5 chosen, 5 rejected.
    # p_e = 0.6*0.5 + 0.4*0.5 = 0.5. kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    a = ["chosen"] * 4 + ["chosen"] * 2 + ["rejected"] * 1 + ["rejected"] * 3
    b = ["chosen"] * 4 + ["rejected"] * 2 + ["chosen"] * 1 + ["rejected"] * 3
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # Three categories, 5 items: A = [c, c, r, r, t], B = [c, c, c, r, c]; they agree on items 1, 2, 4:
    # p_o = 3/5 = 0.6. A = {c:2, r:2, t:1}, B = {c:4, r:1, t:0}: p_e = (2*4 + 2*1 + 1*0) / 25 = 0.4.
    # kappa = (0.6 - 0.4) / (1 - 0.4) = 1/3.
    assert cohen_kappa(["chosen", "chosen", "rejected", "rejected", "tie"],
                       ["chosen", "chosen", "chosen", "rejected", "chosen"]) == pytest.approx(1 / 3)
    assert cohen_kappa(["chosen", "rejected"], ["chosen", "rejected"]) == pytest.approx(1.0)
    assert cohen_kappa(["chosen", "rejected"], ["rejected", "chosen"]) == pytest.approx(-1.0)
    assert cohen_kappa(["chosen"] * 3, ["chosen"] * 3) is None  # p_e = 1: undefined
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError):
        cohen_kappa(["chosen"], [])


def test_throughput_counts_breaks_out():
    stamps = ["2026-01-01T10:00:00+00:00", "2026-01-01T10:00:30+00:00", "2026-01-01T10:01:30+00:00",
              "2026-01-01T12:00:00+00:00"]  # the last comes after a two-hour break
    hours, rate = throughput(stamps, first_seconds=30.0)
    assert hours == pytest.approx((30 + 30 + 60) / 3600)
    assert rate == pytest.approx(4 / hours)


# ------------------------------------------------------------------ queue
def test_priority_objective_low_first_then_least_confident():
    facts = {
        "a": {"objectivity": "subjective", "controversiality": "low", "rm_p": 0.5},
        "b": {"objectivity": "objective", "controversiality": "low", "rm_p": 0.9},
        "c": {"objectivity": "objective", "controversiality": "low", "rm_p": 0.55},
        "d": {"objectivity": "objective", "controversiality": "high", "rm_p": 0.5},
        "e": {"objectivity": "objective", "controversiality": "low", "llm_confidence": 0.95, "llm_contested": True},
        "f": {},  # no attributes: last
    }
    order = sorted(facts, key=lambda i: priority_key(i, facts[i]))
    assert order == ["e", "c", "b", "d", "a", "f"]


def test_queue_pool_takes_queued_pairs_in_priority_then_unverified(store, pairs):
    store.add_attributes(pairs[0], attrs("subjective", "low"), producer="t")
    store.add_attributes(pairs[1], attrs("objective", "low"), producer="t")
    assert select_candidates(store).source == "unverified pool (the human queue is empty)"
    assert store.queue_for_human([pairs[0], pairs[1]], "contested", run_id=None, round_=2) == 2
    assert store.queue_for_human([pairs[0]], "contested", round_=2) == 0  # same reason and round: once
    assert store.queue_for_human([pairs[0]], "low-confidence", round_=2) == 1
    chosen = select_candidates(store)
    assert chosen.source == "human queue"
    assert chosen.ids == [pairs[1], pairs[0]]  # objective first
    assert chosen.reasons[pairs[0]] == ["contested", "low-confidence"] and chosen.rounds[pairs[0]] == 2
    with pytest.raises(StoreError, match=r"1 pair id\(s\) not in the store, e.g. nope"):
        store.queue_for_human(["nope"], "x")
    store.add_label(Label(pairs[1], "human", "annotator:alice", "chosen"))
    assert [r["pair_id"] for r in store.human_queue()] == [pairs[0]]
    assert len(store.human_queue(waiting=False)) == 2


def test_claims_keep_two_annotators_apart_and_expire(store, pairs):
    alice = Queue(store, "alice", QueueConfig(pool="all"))
    bob = Queue(store, "bob", QueueConfig(pool="all", claim_minutes=0.001))
    first = alice.next()
    second = bob.next()
    assert first and second and first != second
    assert {c["annotator"] for c in store.claims()} == {"annotator:alice", "annotator:bob"}
    time.sleep(0.1)  # bob's claim (0.06 s) has expired: alice may take bob's pair
    assert store.claim_next("annotator:alice", [second, first]) == second
    alice.release()
    with pytest.raises(InputError, match="--annotator must be a name without spaces"):
        Queue(store, "al ice")


def test_two_processes_label_at_once_without_lock_errors_or_shared_pairs(tmp_path):
    from skyrm.store import Store

    db = tmp_path / "two.db"
    with Store(db) as store:
        store.add_pairs([make_pair(i) for i in range(200)])
    # Each process runs a real session: answer, and every third answer undo it and answer again.
    # Both start labelling together (each waits for the other's ready file); neither may take more
    # than 120 of the 200 pairs, so both label some however the machine schedules them.
    code = ("import sys, json, os, time\n"
            "from skyrm.store import Store\n"
            "from skyrm.annotate.queue import Queue, QueueConfig\n"
            "from skyrm.annotate.session import Session\n"
            "session = Session(Queue(Store(sys.argv[1]), sys.argv[2], QueueConfig(pool='all')), limit=120)\n"
            "open(sys.argv[1] + '.' + sys.argv[2], 'w').close()\n"
            "while not all(os.path.exists(sys.argv[1] + '.' + n) for n in ('alice', 'bob')): time.sleep(0.01)\n"
            "session.start()\n"
            "n = 0\n"
            "while session.current is not None:\n"
            "    n += 1\n"
            "    time.sleep(0.002)  # a (very fast) person reads the pair\n"
            "    session.answer('1')\n"
            "    if n % 3 == 0:\n"
            "        session.undo()\n"
            "        session.answer('t')\n"
            "session.close()\n"
            "print(json.dumps([a.pair_id for a in session.answers]))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("alice", "bob")]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1] for r in results]
    got = [json.loads(out) for out, _ in results]
    assert len(got[0]) >= 80 and len(got[1]) >= 80 and not set(got[0]) & set(got[1])
    with Store(db) as store:
        standing = store.human_labels()
        assert sorted(lb["pair_id"] for lb in standing) == sorted(got[0] + got[1]) == sorted(store.pair_ids("all"))
        assert store.pool_counts()["gold"] == 200 and store.claims() == []


def test_overlap_shows_labelled_pairs_to_a_second_annotator(store, pairs):
    for pair_id in pairs[:3]:
        store.add_label(Label(pair_id, "human", "annotator:alice", "chosen"))
    plain = Queue(store, "bob", QueueConfig(pool="all"))
    assert plain.overlap_ids() == []
    assert plain.next() not in pairs[:3]
    plain.release()
    every = Queue(store, "bob", QueueConfig(pool="all", overlap=1.0))
    assert every.overlap_ids() == pairs[:3]
    assert every.next() == pairs[0]  # overlap pairs first, for kappa
    every.release()
    assert Queue(store, "alice", QueueConfig(pool="all", overlap=1.0)).overlap_ids() == []  # not her own
    share = sum(in_overlap(f"{i:032x}", 0.1) for i in range(2000)) / 2000
    assert 0.07 < share < 0.13
    with pytest.raises(InputError, match="--overlap must be a share between 0 and 1, not 1.5"):
        QueueConfig(overlap=1.5)


# ------------------------------------------------------------------ session
def test_session_answer_undo_note_skip(store, pairs):
    store.add_attributes(pairs[2], attrs("objective", "low"), producer="t")
    clock = Clock()
    session = Session(Queue(store, "alice", QueueConfig(pool="all")), seed=7, clock=clock)
    shown = session.start()
    assert shown.pair_id == pairs[2]  # the objective, low-controversiality pair first
    assert [title for title, _ in shown.rules] == ["Always", "Category: math", "Objectivity: objective",
                                                    "Controversiality: low", "Tools"]
    first = first_side(7, "alice", pairs[2])
    assert shown.first == first and shown.candidate(1) == getattr(store.get_pair(pairs[2]), first)
    clock.now += 12.5
    session.set_note("computed 2+2")
    answer = session.answer("2")
    other = "rejected" if first == "chosen" else "chosen"
    assert answer.verdict == other
    label = store.labels_for(pairs[2], "human")[-1]
    assert (label.producer, label.verdict, label.order) == ("annotator:alice", other, f"{first}-first")
    assert label.detail["seconds"] == 12.5 and label.detail["note"] == "computed 2+2"
    assert label.detail["candidate_1"] == first and label.detail["via"] == "tui"
    assert label.detail["protocol"] == load_protocol().version == label.prompt_version
    assert store.pair_status(pairs[2])["pool"] == "gold"
    assert session.current.pair_id != pairs[2]
    skipped = session.current.pair_id
    session.answer("s")
    assert store.pair_status(skipped)["pool"] == "discarded"
    undone = session.undo()  # the skip is withdrawn, its pair is back on screen
    assert undone.pair_id == skipped and session.current.pair_id == skipped
    assert store.pair_status(skipped)["pool"] == "unverified"
    assert len(store.labels_for(skipped, "human")) == 1  # append-only: the label stays, withdrawn
    with pytest.raises(sqlite3.IntegrityError, match="label withdrawals are append-only"):
        store.db.execute("DELETE FROM label_withdrawals")
    session.answer("t")
    assert store.pair_status(skipped)["verdict"] == "tie"
    session.undo()
    session.undo()
    assert store.pair_status(pairs[2])["pool"] == "unverified" and session.current.pair_id == pairs[2]
    assert session.current.note == "computed 2+2"  # the note comes back with its pair
    with pytest.raises(AnnotationError, match="nothing to undo in this session"):
        session.undo()
    session.close()
    assert store.claims() == []


def test_session_limit_and_resume_continue_after_the_last_answer(store, pairs):
    session = Session(Queue(store, "alice", QueueConfig(pool="all")), limit=2)
    session.start()
    done = [session.answer("1").pair_id, session.answer("1").pair_id]
    assert session.current is None and session.finished == "limit"
    assert store.claims() == []
    again = Session(Queue(store, "alice", QueueConfig(pool="all")))
    seen = []
    again.start()
    while again.current is not None:
        seen.append(again.current.pair_id)
        again.answer("t")
    assert again.finished == "empty"
    assert sorted(seen) == sorted(set(pairs) - set(done))
    assert verdict_for("1", "rejected") == "rejected" and verdict_for("2", "rejected") == "chosen"
    with pytest.raises(AnnotationError):
        verdict_for("x", "chosen")


def test_hints_are_shown_per_candidate(store, pairs):
    store.add_hints([{"pair_id": pairs[0], "side": "chosen", "producer": "llamacpp:smollm2", "p": 0.9},
                     {"pair_id": pairs[0], "side": "rejected", "producer": "llamacpp:smollm2", "p": 0.2}])
    session = Session(Queue(store, "alice", QueueConfig(pool=pairs[0])), seed=1)
    shown = session.start()
    by_candidate = {h["candidate"]: h["p"] for h in shown.hints}
    chosen_number = 1 if shown.first == "chosen" else 2
    assert by_candidate == {chosen_number: 0.9, 3 - chosen_number: 0.2}


# ------------------------------------------------------------------ status
def test_status_human_section_kappa_judge_and_rm_agreement(store, pairs, tmp_path):
    for i, pair_id in enumerate(pairs[:4]):
        store.add_attributes(pair_id, attrs("objective", "low", "math" if i < 2 else "code"), producer="t")
    # alice and bob overlap on pairs 0-3: agree on 0, 1, 3 (chosen, rejected, chosen), differ on 2.
    alice = ["chosen", "rejected", "chosen", "chosen"]
    bob = ["chosen", "rejected", "rejected", "chosen"]
    for pair_id, a, b in zip(pairs, alice, bob):
        store.add_label(Label(pair_id, "human", "annotator:alice", a, detail={"via": "tui", "seconds": 5}))
        store.add_label(Label(pair_id, "human", "annotator:bob", b, detail={"via": "import"}))
    withdrawn = store.add_label(Label(pairs[4], "human", "annotator:bob", "skip", detail={"via": "tui"}))
    store.withdraw_label(withdrawn, by="annotator:bob")
    store.add_labels([Label(pairs[0], "llm", "j", "chosen"), Label(pairs[1], "llm", "j", "chosen"),
                      Label(pairs[2], "llm", "j", "tie")])
    run = store.start_run("score", {})
    store.add_scores(run, [(pairs[0], 1.0, 0.0, 0.7), (pairs[2], 0.0, 1.0, 0.3), (pairs[3], 0.0, 1.0, 0.4)])
    status = human_status(store)
    # kappa: A = {c:3, r:1}, B = {c:2, r:2}; p_o = 3/4; p_e = (3*2 + 1*2)/16 = 0.5; kappa = 0.5.
    assert status["kappa"] == [{"annotators": ["alice", "bob"], "pairs": 4, "agreement": 0.75, "kappa": 0.5}]
    # The pair's human verdict is its latest standing label (bob's): chosen, rejected, rejected, chosen.
    # Judge: pair 0 chosen = chosen (agree), pair 1 chosen vs rejected (disagree), pair 2 tie (not counted).
    assert status["vs_judge"] == {"math": {"pairs": 2, "agree": 1, "agreement": 0.5},
                                  "all": {"pairs": 2, "agree": 1, "agreement": 0.5}}
    # RM: pair 0 p=0.7 & chosen (agree); pair 2 p=0.3 & rejected (agree); pair 3 p=0.4 & chosen (disagree).
    assert status["vs_rm"] == {"code": {"pairs": 2, "agree": 1, "agreement": 0.5},
                               "math": {"pairs": 1, "agree": 1, "agreement": 1.0},
                               "all": {"pairs": 3, "agree": 2, "agreement": 0.6667}}
    rows = {r["annotator"]: r for r in status["annotators"]}
    assert rows["alice"]["labels"] == 4 and rows["alice"]["in_terminal"] == 4 and rows["alice"]["median_seconds"] == 5
    assert rows["bob"]["labels"] == 4 and rows["bob"]["imported"] == 4  # the withdrawn skip is not counted
    assert status["labels"] == 8 and status["pairs"] == 4
    store.close()
    out = subprocess.run([sys.executable, "-m", "skyrm", "status", "--json", "--db", str(tmp_path / "test.db")],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["human"]["kappa"][0]["kappa"] == 0.5
    table = subprocess.run([sys.executable, "-m", "skyrm", "status", "--db", str(tmp_path / "test.db")],
                           capture_output=True, text=True, check=True).stdout
    assert "alice vs bob" in table and "Cohen's kappa" in table and "human vs RM" in table


# ------------------------------------------------------------------ screen pieces
def test_parse_keys_and_escape_sequences_in_data_are_inert(store):
    from skyrm.annotate.tui import parse_keys, render_body

    assert parse_keys("1\x1b[A\x1b[6~\tq\x1b\r\x7f") == ["1", "up", "pgdn", "tab", "q", "esc", "enter", "backspace"]
    assert parse_keys("\x1b[1;5Cx") == ["x"]  # an unknown sequence is dropped whole
    hostile = Pair(prompt=[{"role": "user", "content": "clear\x1b[2J the screen"}],
                   chosen=[{"role": "assistant", "content": "ok\x1b]0;title\x07"}],
                   rejected=[{"role": "assistant", "content": "no"}], source="s")
    store.add_pairs([hostile])
    session = Session(Queue(store, "alice", QueueConfig(pool="all")))
    body = render_body(session.start(), session, 79, color_system=None)
    text = "\n".join(body.lines)
    assert "\x1b" not in text and "\x07" not in text
    assert "clear\ufffd[2J the screen" in text
    assert [title for title, _ in body.sections][:4] == ["Pair", "Conversation", "Candidate 1", "Candidate 2"]
    assert all(len(line) <= 79 for line in body.lines)
    session.close()


def test_a_claim_in_use_is_kept_alive(store, pairs):
    alice = Queue(store, "alice", QueueConfig(pool="all", claim_minutes=0.005))  # 0.3 s
    held = alice.next()
    first_expiry = store.claims()[0]["expires"]
    alice.keep()  # too early: nothing changes
    assert store.claims()[0]["expires"] == first_expiry
    time.sleep(0.2)  # past half the claim's time: a key press extends it
    alice.keep()
    assert store.claims()[0]["expires"] > first_expiry
    time.sleep(0.15)  # the first claim would have expired by now; the extended one holds
    assert store.claim_next("annotator:bob", [held]) is None
    alice.release()
    assert store.claim_next("annotator:bob", [held]) == held
