"""An application's own logs as traffic: chat calls it already made, with the scores people or evaluators gave them,
imported into the store so that the loop learns from them as if they had come through `serve`.

Three formats are read (formats.py says their shapes): OpenAI-style request/response logs and the fine-tuning chat
format, OpenTelemetry GenAI spans (an OTLP/JSON export, or flat spans), and Langfuse trace exports with scores.

A file is checked whole before anything is written, and each problem names its line (or span), field and fix: half
an import would leave the user guessing which half. Records are read one at a time and each is bounded, and the file
is read twice (check, then write) rather than held, so a log of any length fits in memory. Ids come from the log's
own ids (a response id, a span, a trace), so a file imported twice adds nothing the second time. Every text passes
`redact` before it is stored: logs carry keys, and what is stored is later shown to a reflector."""
from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store import LessonStore
from ..store.traffic import add_calls, add_feedback, feedback, get_call
from ..traffic import SCOPE_NAME
from .fields import Bad, brief, loads
from .formats import EXAMPLES, PARSERS, Parsed

__all__ = ["FORMATS", "ImportReport", "TraceFileError", "detect_format", "import_traces"]

FORMATS = tuple(PARSERS)
MAX_RECORD = 16 << 20     # bytes in one line: a long conversation with images fits; a runaway line is refused
MAX_DOCUMENT = 256 << 20  # a pretty-printed JSON file is parsed whole
MAX_REPORTED = 10
BATCH = 256               # calls written per transaction


class TraceFileError(ValueError):
    """A trace file that cannot be imported; the message names the file, line (or span) and field, and the fix."""


@dataclass(frozen=True)
class ImportReport:
    """What an import did: calls new to the store, calls it already had, feedback rows added, records left out (why ->
    how many), and per scope {"added", "present", "feedback"}."""

    path: str
    format: str
    added: int = 0
    present: int = 0
    feedback: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    scopes: dict[str, dict[str, int]] = field(default_factory=dict)


# ------------------------------------------------------------------ reading records

def _values(path: Path) -> Iterator[tuple[str, Any, str]]:
    """(where, record, problem) for each record: a line of JSON Lines, or each value of a pretty-printed JSON file;
    arrays and OTLP exports are opened into their items and spans."""
    try:
        with path.open("rb") as f:
            first = f.readline(MAX_RECORD + 1)
            while first and not first.strip():
                first = f.readline(MAX_RECORD + 1)
    except FileNotFoundError:
        raise TraceFileError(f"{path}: no such file — give the path of a .jsonl or .json trace file") from None
    except IsADirectoryError:
        raise TraceFileError(f"{path}: is a directory — give the path of a .jsonl or .json trace file") from None
    except OSError as e:
        raise TraceFileError(f"{path}: cannot read it ({e.strerror or e})") from None
    head = first.decode("utf-8-sig", "replace").strip()
    if head[:1] in ("{", "[") and len(first) <= MAX_RECORD and loads(head)[1]:  # one JSON value over many lines
        yield from _document(path)
        return
    with path.open("rb") as f:
        n = 0
        while raw := f.readline(MAX_RECORD + 1):
            n += 1
            if len(raw) > MAX_RECORD and not raw.endswith(b"\n"):
                while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                yield f"line {n}", None, f"is longer than {MAX_RECORD:,} bytes — split the record or leave out its media"
                continue
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield f"line {n}", None, f"is not UTF-8 text (byte 0x{raw[e.start]:02x}) — save the file as UTF-8"
                continue
            if line.strip():
                value, problem = loads(line.strip())
                yield from _expand(f"line {n}", value) if not problem else [(f"line {n}", None, problem)]


def _document(path: Path) -> Iterator[tuple[str, Any, str]]:
    if path.stat().st_size > MAX_DOCUMENT:
        raise TraceFileError(f"{path}: a JSON document larger than {MAX_DOCUMENT >> 20} MiB — write it as JSON Lines "
                             "(one record per line), which is read line by line")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TraceFileError(f"{path}: not UTF-8 text (at byte {e.start}) — save the file as UTF-8") from None
    decoder, i, line, counted = json.JSONDecoder(), 0, 1, 0
    while True:  # one value, or several in a row (as OpenTelemetry's console exporter prints spans)
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i >= len(text):
            return
        line, counted = line + text.count("\n", counted, i), i
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            yield f"line {e.lineno}", None, f"not valid JSON ({e.msg} at column {e.colno})"
            return
        except RecursionError:
            yield f"line {line}", None, "nested too deeply to read"
            return
        yield from _expand(f"line {line}", value)


def _expand(where: str, value: Any) -> Iterator[tuple[str, Any, str]]:
    if isinstance(value, list):
        for k, item in enumerate(value):
            yield f"{where} item {k}", item, ""
    elif isinstance(value, dict) and "resourceSpans" in value:  # OTLP/JSON: resources > scopes > spans
        for r, rs in enumerate(_list(value, "resourceSpans")):
            for s, ss in enumerate(_list(rs, "scopeSpans") or _list(rs, "instrumentationLibrarySpans")):
                for k, span in enumerate(_list(ss, "spans")):
                    yield f"{where} resourceSpans[{r}].scopeSpans[{s}].spans[{k}]", span, ""
    else:
        yield where, value, ""


def _list(obj: Any, key: str) -> list:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, list) else []


def _empty(path: Path) -> str:
    return f"{path}: the file is empty — write one call per line, e.g. {EXAMPLES['openai']}"


def detect_format(path: str | Path) -> str:
    """The format of a trace file, from its first record: "openai", "otel" or "langfuse". TraceFileError if the
    first records are unreadable or the shape is none of them."""
    path, problems = Path(path), []
    for where, obj, problem in _values(path):
        if isinstance(obj, dict):
            if "request" in obj or "response" in obj or "messages" in obj:
                return "openai"
            if "attributes" in obj and any(k in obj for k in ("spanId", "span_id", "context", "traceId", "name")):
                return "otel"
            if "id" in obj and ("input" in obj or "output" in obj):
                return "langfuse"
            raise TraceFileError(f"{path} {where}: cannot tell the format from this record (keys: "
                                 f"{', '.join(map(str, list(obj)[:8]))}) — pass --format openai, otel or langfuse; "
                                 f"the openai form is {EXAMPLES['openai']}")
        problems.append(f"{path} {where}: {problem or 'expected a JSON object, got ' + brief(obj)}")
        if len(problems) >= MAX_REPORTED:
            break
    raise TraceFileError("\n".join(problems) if problems else _empty(path))


# ------------------------------------------------------------------ the import

def _records(path: Path, fmt: str, scope: str | None, score_range: tuple[float, float] | None
             ) -> Iterator[tuple[str, Parsed | str | None, str]]:
    """(where, the call with its feedback or why the record is left out, problem) for each record of the file."""
    parse = PARSERS[fmt]
    for where, obj, problem in _values(path):
        if problem:
            yield where, None, problem
        elif not isinstance(obj, dict):
            yield where, None, f"expected a JSON object, got {brief(obj)} — each record needs {EXAMPLES[fmt]}"
        else:
            try:
                yield where, parse(obj, scope, score_range), ""
            except Bad as e:
                yield where, None, str(e)
            except RecursionError:
                yield where, None, "is nested too deeply (arrays and objects inside one another)"


def import_traces(store: LessonStore, path: str | Path, *, format: str = "auto", scope: str | None = None,
                  score_range: tuple[float, float] | None = None) -> ImportReport:
    """Import the chat calls an application logged in `path`, with the feedback they were given, into `store`.

    The whole file is checked first: TraceFileError lists its problems (at most 10) and nothing is written. `scope`
    puts every call in that scope; `score_range` (lo, hi) rescales numeric scores given on another scale to [0, 1].
    A call already in the store stays as it is, and feedback already recorded for it is not added again."""
    path = Path(path)
    if format not in ("auto", *FORMATS):
        raise ValueError(f"unknown trace format {format!r}: use auto, {', '.join(FORMATS)}")
    if score_range is not None and not (math.isfinite(score_range[0]) and math.isfinite(score_range[1])
                                        and score_range[0] < score_range[1]):
        raise ValueError(f"score range {score_range[0]:g}:{score_range[1]:g}: LO must be below HI, e.g. 1:5")
    if scope is not None and not SCOPE_NAME.match(scope):
        raise ValueError(f"scope {scope!r}: use up to 80 letters, digits and _ . / : + -, starting with a letter or digit")
    fmt = detect_format(path) if format == "auto" else format
    problems, skipped, records = [], Counter(), 0
    for where, parsed, problem in _records(path, fmt, scope, score_range):  # first pass: check, write nothing
        records += 1
        if problem:
            problems.append(f"{path} {where}: {problem}")
        elif isinstance(parsed, str):
            skipped[parsed] += 1
        else:
            skipped.update(parsed[2])
    if problems:
        more = len(problems) - MAX_REPORTED
        raise TraceFileError("\n".join(problems[:MAX_REPORTED] + ([f"... and {more} more"] if more > 0 else [])))
    if not records:
        raise TraceFileError(_empty(path))
    totals, scopes, seen, batch = Counter(), {}, set(), []
    for where, parsed, problem in _records(path, fmt, scope, score_range):  # second pass: write
        if problem:
            raise TraceFileError(f"{path} {where}: {problem} (the file changed during the import; import it again)")
        if isinstance(parsed, tuple):
            if parsed[0].id in seen:
                skipped["records repeated in the file (the same call id)"] += 1
                continue
            seen.add(parsed[0].id)
            batch.append(parsed)
        if len(batch) >= BATCH:
            _write(store, batch, totals, scopes)
            batch = []
    _write(store, batch, totals, scopes)
    return ImportReport(str(path), fmt, totals["added"], totals["present"], totals["feedback"], dict(skipped), scopes)


def _write(store: LessonStore, batch: list[Parsed], totals: Counter, scopes: dict) -> None:
    present = {c.id for c, _, _ in batch if get_call(store, c.id) is not None}
    add_calls(store, [c for c, _, _ in batch if c.id not in present])
    for call, found, _ in batch:
        counts = scopes.setdefault(call.scope, {"added": 0, "present": 0, "feedback": 0})
        kind = "present" if call.id in present else "added"
        counts[kind], totals[kind] = counts[kind] + 1, totals[kind] + 1
        # a known call's feedback is compared, not skipped: an import stopped between a batch's calls and their
        # feedback, or a newer export with scores added since, still brings each verdict in exactly once
        have = {(f.value, f.comment, f.demonstration) for f in feedback(store, call)
                if f.call_id == call.id and f.source == "import"} if call.id in present else set()
        for f in found:
            if (f.value, f.comment, f.demonstration) not in have:
                add_feedback(store, f)
                have.add((f.value, f.comment, f.demonstration))
                counts["feedback"], totals["feedback"] = counts["feedback"] + 1, totals["feedback"] + 1
