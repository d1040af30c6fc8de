"""Spans, diagnostics and their rendering (rustc's layout: code, location, the source line, a caret, notes, help).

Codes are stable and grouped by phase:
  A0xx  reading and parsing          A1xx  names, arguments, definitions
  A2xx  shapes                       A3xx  limits (sizes a spec may not exceed)
  A4xx  backends and building
"""

from __future__ import annotations

import bisect
import difflib
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace

from pydantic import BaseModel, ConfigDict


class Span(BaseModel):
    """A region of one source file: 1-based lines and columns, `end_column` exclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    file: str | None = None
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file or '<spec>'}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """Immutable once built: a pass that learns more about one makes a new one (`with_notes`)."""

    code: str
    message: str
    span: Span | None = None
    label: str = ""  # written under the caret
    notes: tuple[str, ...] = ()
    help: str | None = None
    severity: str = "error"

    def __post_init__(self) -> None:
        object.__setattr__(self, "notes", tuple(self.notes))

    def with_notes(self, before: Iterable[str] = (), after: Iterable[str] = ()) -> Diagnostic:
        return replace(self, notes=(*before, *self.notes, *after))

    def to_dict(self) -> dict:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "file": self.span.file if self.span else None,
            "line": self.span.line if self.span else None,
            "column": self.span.column if self.span else None,
            "end_line": self.span.end_line if self.span else None,
            "end_column": self.span.end_column if self.span else None,
            "label": self.label,
            "notes": list(self.notes),
            "help": self.help,
        }


class RuleError(Exception):
    """Raised by a layer kind's rule or an expression; the pass that called it adds the span."""

    def __init__(self, message: str, help: str | None = None, code: str = "A200", notes: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.help = help
        self.code = code
        self.notes = notes or []


class ArchcError(Exception):
    """One or more diagnostics about the user's input. The CLI renders them and exits 1."""

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = list(diagnostics)
        self.sources = sources or {}
        super().__init__("\n".join(d.message for d in self.diagnostics))

    def render(self, color: bool = False) -> str:
        return render_text(self.diagnostics, self.sources, color=color)

    def __str__(self) -> str:
        return self.render()


MAX_SUGGESTION_CANDIDATES = 200  # names did-you-mean scores; among more, those sharing the longest start or end
MAX_SUGGESTION_RATIOS = 10  # full (quadratic) comparisons per suggestion


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    close = _closest(word, tuple(candidates))
    return f"did you mean `{close}`?" if close else None


@functools.lru_cache(maxsize=256)
def _closest(word: str, candidates: tuple[str, ...], cutoff: float = 0.6) -> str | None:
    """difflib.get_close_matches(word, candidates, n=1, cutoff) with its work bounded: a spec with thousands
    of long block names and many unknown calls must not take minutes (~3 ms a full comparison of two
    128-character names). Among a few hundred names it is the same answer. Among more, a typo keeps most of
    a name's start or its end, so the names next to the word in sorted order, and next to it in the order of
    reversed names, are the ones scored; of those only the few whose cheap upper bound (quick_ratio) is
    highest are compared fully. Cached: one unknown word is often met again (a block's mistake at each call)."""
    if len(candidates) > MAX_SUGGESTION_CANDIDATES:
        forward, backward = _orders(candidates)
        half = MAX_SUGGESTION_CANDIDATES // 4
        i, j = bisect.bisect(forward, word), bisect.bisect(backward, word[::-1])
        candidates = tuple(dict.fromkeys(forward[max(0, i - half):i + half]
                                         + [c[::-1] for c in backward[max(0, j - half):j + half]]))
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(word)
    scored = []
    for candidate in candidates:
        matcher.set_seq1(candidate)
        if matcher.real_quick_ratio() >= cutoff:  # lengths alone
            quick = matcher.quick_ratio()
            if quick >= cutoff:
                scored.append((quick, candidate))
    scored.sort(reverse=True)
    best: tuple[float, str] | None = None
    for quick, candidate in scored[:MAX_SUGGESTION_RATIOS]:
        if best is not None and quick < best[0]:
            break  # an upper bound below the best score: nothing further can win
        matcher.set_seq1(candidate)
        score = matcher.ratio()
        if score >= cutoff and (best is None or (score, candidate) > best):
            best = (score, candidate)
    return best[1] if best else None


@functools.lru_cache(maxsize=8)
def _orders(candidates: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The names sorted, and the reversed names sorted: neighbours share the longest start, or end."""
    return sorted(candidates), sorted(c[::-1] for c in candidates)


def _paint(text: str, style: str, color: bool) -> str:
    codes = {"error": "1;31", "warning": "1;33", "bold": "1", "blue": "1;34", "help": "1;36"}
    return f"\x1b[{codes[style]}m{text}\x1b[0m" if color else text


def source_lines(text: str) -> list[str]:
    """A spec's lines as its grammar counts them: split at `\\n` only (a `\\r` before it belongs to the line
    break). `str.splitlines` also splits at form feeds, U+2028, U+2029 and other characters that a comment may
    hold, which would shift every line number after them."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def render_text(diagnostics: Iterable[Diagnostic], sources: dict[str, str], color: bool = False) -> str:
    out: list[str] = []
    split: dict[str, list[str]] = {}  # each source split once, however many diagnostics point into it
    for diag in diagnostics:
        head = _paint(f"{diag.severity}[{diag.code}]", diag.severity, color)
        out.append(f"{head}: {_paint(diag.message, 'bold', color)}")
        span = diag.span
        if span and (span.file or "") not in split:
            split[span.file or ""] = source_lines(sources.get(span.file or "", ""))
        lines = split[span.file or ""] if span else []
        if span:
            width = len(str(span.end_line))
            gutter = " " * width
            out.append(f"{gutter}{_paint('-->', 'blue', color)} {span}")
            if 0 < span.line <= len(lines):
                text = lines[span.line - 1].expandtabs(1)
                # Columns come from JSON specs too: clamp them to the line so no span can ask for a huge margin.
                column = min(max(span.column, 1), len(text) + 1)
                end = span.end_column if span.end_line == span.line else len(text) + 1
                end = max(column + 1, min(end, len(text) + 1))
                text, column, end = _line_window(text, column, end)
                carets = "^" * (end - column)
                bar = _paint("|", "blue", color)
                out.append(f"{gutter} {bar}")
                out.append(f"{_paint(str(span.line).rjust(width), 'blue', color)} {bar} {text}")
                marker = " " * (column - 1) + _paint(carets, diag.severity, color)
                out.append(f"{gutter} {bar} {marker}" + (f" {diag.label}" if diag.label else ""))
                out.append(f"{gutter} {bar}")
            elif diag.label:
                out.append(f"{gutter} = {diag.label}")
        for note in diag.notes:
            out.append(f"   = note: {note}")
        if diag.help:
            out.append(f"   = {_paint('help', 'help', color)}: {diag.help}")
        out.append("")
    return "\n".join(out)


MAX_SHOWN_LINE = 160  # characters of a source line a diagnostic shows: a window around the caret


def _line_window(text: str, column: int, end: int) -> tuple[str, int, int]:
    """The part of a long line around columns [column, end) (1-based, end exclusive), with `...` where it is
    cut, and the columns moved to match. A 1 MiB line with 100 errors would otherwise print 100 MiB."""
    if len(text) <= MAX_SHOWN_LINE:
        return text, column, end
    end = min(end, column + MAX_SHOWN_LINE // 2)  # a long span is shown from its start
    start = max(1, min(column - MAX_SHOWN_LINE // 4, end - MAX_SHOWN_LINE + 8))
    stop = min(len(text) + 1, start + MAX_SHOWN_LINE)
    head = "..." if start > 1 else ""
    tail = "..." if stop <= len(text) else ""
    shift = start - 1 - len(head)
    return head + text[start - 1:stop - 1] + tail, column - shift, end - shift


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in diagnostics], indent=2)
