"""The terminal UI of ``skyrm annotate``: rich rendering and raw single-key input over a Session.

Works in any terminal that speaks ANSI (over SSH, in tmux, in a pseudo-terminal), down to
80x24: a header line, a scrolling body (attributes and hint, the conversation, Candidate 1,
Candidate 2, the protocol's rules for the pair), a message line and a key line. Keys are read
one at a time in cbreak mode (termios), so Ctrl-C still interrupts; the terminal is restored on
any exit. All decisions live in ``session.py``; this module only draws and reads keys, which is
why it is the one part of the library that writes to a terminal.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import select
import shutil
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from rich.console import Console, RenderableType
from rich.rule import Rule
from rich.text import Text

from skyrm.annotate import AnnotationError
from skyrm.annotate.session import ANSWERS, Session, Shown
from skyrm.text import render_plain

_ESCAPES = {"[A": "up", "[B": "down", "[C": "right", "[D": "left", "[5~": "pgup", "[6~": "pgdn",
            "[H": "home", "OH": "home", "[1~": "home", "[7~": "home", "[F": "end", "OF": "end", "[4~": "end",
            "[8~": "end", "[Z": "backtab", "OA": "up", "OB": "down"}
MIN_COLUMNS, MIN_ROWS = 40, 10
# Pair texts are data, not terminal commands: an escape sequence inside a response must not clear
# the screen or move the cursor, so control characters other than newline and tab are shown as �.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    return _CONTROL.sub("\ufffd", text)


def parse_keys(text: str) -> list[str]:
    """Key names from what a terminal sent: characters, or 'up', 'pgdn', 'enter', 'esc'..."""
    keys, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\x1b":
            for seq, name in _ESCAPES.items():
                if text.startswith(seq, i + 1):
                    keys.append(name)
                    i += 1 + len(seq)
                    break
            else:
                if text.startswith("[", i + 1):  # an unknown CSI sequence: skip to its final byte
                    j = i + 2
                    while j < len(text) and not ("@" <= text[j] <= "~"):
                        j += 1
                    i = j + 1
                else:
                    keys.append("esc")
                    i += 1
            continue
        keys.append({"\r": "enter", "\n": "enter", "\t": "tab", "\x7f": "backspace", "\x08": "backspace",
                     "\x04": "eof"}.get(ch, ch))
        i += 1
    return keys


class Terminal:
    """Raw single-key input and full-screen output on a tty."""

    def __init__(self, fd_in: int, out: IO[str]):
        self.fd_in, self.out = fd_in, out
        self._pending: list[str] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @contextmanager
    def raw(self) -> Iterator["Terminal"]:
        saved = termios.tcgetattr(self.fd_in)
        tty.setcbreak(self.fd_in)
        self.out.write("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J")  # alternate screen, hide the cursor
        self.out.flush()
        try:
            yield self
        finally:
            self.out.write("\x1b[0m\x1b[?25h\x1b[?1049l")
            self.out.flush()
            termios.tcsetattr(self.fd_in, termios.TCSADRAIN, saved)

    def size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(self.out.fileno())
            return size.columns, size.lines
        except (OSError, ValueError):
            size = shutil.get_terminal_size((80, 24))
            return size.columns, size.lines

    def read_key(self, timeout: float | None = None) -> str | None:
        """The next key, or None when ``timeout`` seconds pass without one."""
        if self._pending:
            return self._pending.pop(0)
        ready, _, _ = select.select([self.fd_in], [], [], timeout)
        if not ready:
            return None
        data = os.read(self.fd_in, 1024)
        if not data:
            return "eof"
        # An escape sequence can arrive split: give its rest a moment.
        while data.endswith(b"\x1b") or (b"\x1b[" in data[-4:] and not data[-1:].isalpha() and
                                          not data.endswith(b"~")):
            more, _, _ = select.select([self.fd_in], [], [], 0.05)
            if not more:
                break
            data += os.read(self.fd_in, 1024)
        self._pending = parse_keys(self._decoder.decode(data))
        return self._pending.pop(0) if self._pending else None

    def draw(self, lines: list[str]) -> None:
        self.out.write("".join(f"\x1b[{row};1H{line}\x1b[0m\x1b[K" for row, line in enumerate(lines, 1)) + "\x1b[J")
        self.out.flush()


def _ansi_lines(renderables: list[RenderableType], width: int, color_system: str | None) -> list[str]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=True, color_system=color_system, highlight=False,
                      emoji=False, markup=False, legacy_windows=False, soft_wrap=False)
    for renderable in renderables:
        console.print(renderable)
    return buffer.getvalue().split("\n")[:-1]


def _one_line(text: Text, width: int, color_system: str | None) -> str:
    text = text.copy()
    text.truncate(width, overflow="ellipsis")
    text.no_wrap = True
    return _ansi_lines([text], width, color_system)[0] if width > 0 else ""


@dataclass
class Body:
    lines: list[str]
    sections: list[tuple[str, int]]  # (title, first line)


def render_body(shown: Shown, session: Session, width: int, color_system: str | None = "standard") -> Body:
    """The scrolling part of the screen for one pair, as ANSI lines ``width`` cells wide."""
    lines: list[str] = []
    sections: list[tuple[str, int]] = []

    def section(title: str, parts: list[RenderableType], style: str = "bold cyan") -> None:
        sections.append((title, len(lines)))
        lines.extend(_ansi_lines([Rule(Text(title, style=style), align="left", style="dim"), *parts], width,
                                 color_system))

    attrs = shown.attributes
    about: list[RenderableType] = []
    if attrs is None:
        about.append(Text("no attributes (run skyrm attributes): judge by the protocol's general rules", style="yellow"))
    else:
        about.append(Text.assemble(("task ", "dim"), (clean(attrs.task_category), "bold"), ("  ·  ", "dim"),
                                   (clean(attrs.objectivity), "bold"), ("  ·  controversiality ", "dim"),
                                   (clean(attrs.controversiality), "bold")))
        about.append(Text.assemble(("desired: ", "dim"), clean(attrs.desired_attributes)))
        about.append(Text.assemble(("guideline: ", "dim"), clean(attrs.guideline)))
    for hint in shown.hints:
        about.append(Text.assemble(("hint ", "magenta"), (f"Candidate {hint['candidate']}: ", "bold"),
                                   f"P({hint['kind']}) = {hint['p']:.2f} ",
                                   (f"by {clean(hint['producer'])} — an LLM's guess: check it, never copy it", "dim")))
    if shown.reasons:
        about.append(Text.assemble(("queued because: ", "dim"), clean(", ".join(shown.reasons))))
    section("Pair", about)
    turns = shown.pair.prompt
    conversation = [Text.assemble((f"{clean(str(m.get('role', '?'))).capitalize()}: ",
                                   "bold green" if m.get("role") == "user" else "bold blue"),
                                  clean(str(m.get("content", "")))) for m in turns]
    section("Conversation", conversation or [Text("(no history: the candidates answer nothing)", style="dim")])
    for number in (1, 2):
        section(f"Candidate {number}", [Text(clean(render_plain(shown.candidate(number)).removeprefix("Assistant: ")))],
                style="bold yellow")
    rules = []
    for title, body in shown.rules:
        rules.append(Text(clean(title), style="bold"))
        rules.append(Text(clean(body)))
    section(f"Protocol ({session.protocol.version})", rules, style="bold magenta")
    return Body(lines, sections)


KEYS_LINE = "1 2 better  t tie  s can't decide  u undo  n note  q quit"


@dataclass
class Screen:
    """What the loop keeps between keys."""

    body: Body | None = None
    body_for: tuple[str, int] | None = None  # (pair id, width) the body was rendered for
    offset: int = 0
    message: Text = field(default_factory=Text)
    note: str | None = None  # the note being typed, or None


def run_tui(session: Session, fd_in: int, out: IO[str], *, color_system: str | None = "standard") -> None:
    """Run the labelling loop until the annotator quits (q, Ctrl-D) or interrupts (Ctrl-C).

    The pair on screen is released on every exit; answers were stored as they were given.
    """
    terminal = Terminal(fd_in, out)
    screen = Screen()
    try:
        with terminal.raw():
            session.start()
            last_size: tuple[int, int] | None = None
            while True:
                columns, rows = terminal.size()
                if (columns, rows) != last_size or screen.body is None or screen.body_for is None or (
                        session.current is not None and screen.body_for[0] != session.current.pair_id):
                    last_size = (columns, rows)
                    _layout(session, screen, columns, color_system)
                terminal.draw(_frame(session, screen, columns, rows, color_system))
                key = terminal.read_key(timeout=0.5)
                if key is None:
                    continue
                if not _handle(session, screen, key, max(1, rows - 3)):
                    return
                session.queue.keep()
    finally:
        session.close()


def _layout(session: Session, screen: Screen, columns: int, color_system: str | None) -> None:
    shown = session.current
    width = max(MIN_COLUMNS, columns) - 1  # keep the last column free: no wrap at the right edge
    if shown is None:
        screen.body, screen.body_for = Body([], []), None
        return
    if screen.body_for is None or screen.body_for[0] != shown.pair_id:
        screen.offset = 0
    screen.body = render_body(shown, session, width, color_system)
    screen.body_for = (shown.pair_id, columns)


def _frame(session: Session, screen: Screen, columns: int, rows: int, color_system: str | None) -> list[str]:
    width = max(1, columns - 1)
    view = max(1, rows - 3)
    done = len(session.answers)
    shown = session.current
    header = Text(f" skyrm annotate · {clean(session.annotator)} · {done} answered", style="reverse bold")
    if shown is not None:
        header.append(f" · pair {shown.pair_id[:8]} · {clean(session.queue.candidates.source)}", style="reverse")
    lines = [_one_line(header, width, color_system)]
    if shown is None or screen.body is None:
        why = ("reached --limit" if session.finished == "limit" else
               f"no pair left in {clean(session.queue.candidates.source)} for {clean(session.annotator)}")
        body = [Text(""), Text(f"  Done: {why}.", style="bold"),
                Text(f"  {done} answer(s) stored in this session; each one is already saved."),
                Text("  u takes back the last answer, q quits.", style="dim")]
        lines += [_one_line(t, width, color_system) for t in body]
        lines += [""] * (view - len(body))
    else:
        body_lines = screen.body.lines
        screen.offset = max(0, min(screen.offset, len(body_lines) - view))
        lines += body_lines[screen.offset:screen.offset + view]
        lines += [""] * (view - len(body_lines[screen.offset:screen.offset + view]))
    if screen.note is not None:
        message = Text.assemble(("note", "bold"), " (Enter keeps, Esc drops): ", clean(screen.note), ("▏", "blink"))
    else:
        message = screen.message
        if shown is not None and shown.note and not message.plain:
            message = Text.assemble(("note: ", "dim"), clean(shown.note))
    lines.append(_one_line(message, width, color_system))
    position = ""
    if shown is not None and screen.body is not None:
        total = len(screen.body.lines)
        position = f"  ↑↓␣b⇥ {screen.offset + 1}-{min(total, screen.offset + view)}/{total}"
    lines.append(_one_line(Text.assemble((KEYS_LINE, "bold"), (position, "dim")), width, color_system))
    return lines


def _handle(session: Session, screen: Screen, key: str, view: int) -> bool:
    """Apply one key; False to quit."""
    if screen.note is not None:
        if key == "enter":
            session.set_note(screen.note)
            screen.message = Text.assemble(("note kept: ", "green"), clean(screen.note))
            screen.note = None
        elif key == "esc":
            screen.note, screen.message = None, Text("note dropped", style="dim")
        elif key == "backspace":
            screen.note = screen.note[:-1]
        elif len(key) == 1 and key.isprintable():
            screen.note += key
        return True
    if key in ("q", "eof"):
        return False
    screen.message = Text()
    body = screen.body
    try:
        if key in ANSWERS and session.current is not None:
            answer = session.answer(key)
            screen.message = Text.assemble(("stored: ", "green"), ANSWERS[key] +
                                           (" better" if key in "12" else ""), (" · u takes it back", "dim"))
            if answer.verdict == "skip":
                screen.message.append(" (discarded, as the protocol says)", style="dim")
        elif key == "u":
            undone = session.undo()
            screen.message = Text.assemble(("took back: ", "yellow"), ANSWERS[undone.key] +
                                           (" better" if undone.key in "12" else ""), " — answer again")
            screen.body_for = None
        elif key == "n" and session.current is not None:
            screen.note = session.current.note
        elif body is not None and session.current is not None:
            _scroll(screen, body, key, view)
    except AnnotationError as exc:
        screen.message = Text(str(exc), style="red")
    return True


def _scroll(screen: Screen, body: Body, key: str, view: int) -> None:
    last = max(0, len(body.lines) - view)
    starts = [start for _, start in body.sections]
    if key in ("down", "j"):
        screen.offset += 1
    elif key in ("up", "k"):
        screen.offset -= 1
    elif key in ("pgdn", " ", "f"):
        screen.offset += view - 1
    elif key in ("pgup", "b"):
        screen.offset -= view - 1
    elif key in ("home", "g"):
        screen.offset = 0
    elif key in ("end", "G"):
        screen.offset = last
    elif key == "tab":
        screen.offset = next((s for s in starts if s > screen.offset), screen.offset)
    elif key == "backtab":
        screen.offset = next((s for s in reversed(starts) if s < screen.offset), 0)
    elif key == "r":
        screen.offset = starts[-1] if starts else 0
    else:
        screen.message = Text(f"key {key!r} does nothing here: {KEYS_LINE}", style="dim")
    screen.offset = max(0, min(screen.offset, last))
