"""`secondnature import traces FILE` (learn from what an application already logged: its chat calls and the scores
they were given) and `secondnature calls` (the recorded calls, served or imported, with their feedback)."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from rich import box
from rich.markup import escape
from rich.table import Table

from ..store import open_store
from ..store import traffic as db
from ..traces import FORMATS, import_traces
from ..traffic import last_user_text, score_of
from . import ui

SHOWN = 60  # characters of a request and a reply in the calls list


def score_range(value: str) -> tuple[float, float]:
    """"1:5" -> (1.0, 5.0): the scale a log's numeric scores are on."""
    lo, sep, hi = value.partition(":")
    try:
        low, high = float(lo), float(hi)
    except ValueError:
        low = high = float("nan")
    if not sep or not low < high:
        raise argparse.ArgumentTypeError(f"{value!r}: give the scale as LO:HI with LO below HI, e.g. 1:5 or 0:10")
    return low, high


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import what an application already logged: `import traces FILE` (its chat "
                                      "calls and their scores)")
    p.add_argument("kind", choices=["traces"], help="traces: chat calls with their feedback")
    p.add_argument("file", help="JSON Lines or JSON: OpenAI request/response logs (or the fine-tuning chat format), "
                                "OpenTelemetry GenAI spans (OTLP/JSON), or a Langfuse trace export")
    p.add_argument("--format", choices=["auto", *FORMATS], default="auto", help="default: told from the first record")
    p.add_argument("--scope", default=None, help="put every call in this scope (default: a record's own scope, "
                                                 "Langfuse trace name, span agent name or model, else 'traffic')")
    p.add_argument("--score-range", type=score_range, default=None, metavar="LO:HI",
                   help="the scale of the log's numeric scores (e.g. 1:5), rescaled to [0, 1]")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("calls", help="list recorded calls (served or imported), newest first, with their feedback")
    p.add_argument("--scope", default=None)
    p.add_argument("--limit", type=int, default=20, help="the newest N calls (0: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_calls)


def cmd_import(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    r = import_traces(store, args.file, format=args.format, scope=args.scope, score_range=args.score_range)
    if args.json:
        print(json.dumps(asdict(r), indent=1))
        return 0
    t = Table(title=f"{r.format} traces from {escape(r.path)}", box=box.SIMPLE_HEAD, title_justify="left")
    t.add_column("scope", ratio=1, overflow="fold")
    for col in ("new calls", "already there", "feedback"):
        t.add_column(col, justify="right", no_wrap=True)
    for scope, n in sorted(r.scopes.items()):
        t.add_row(escape(scope), str(n["added"]), str(n["present"]), str(n["feedback"]))
    if len(r.scopes) != 1:
        t.add_row("[bold]all[/]", str(r.added), str(r.present), str(r.feedback))
    ui.out.print(t)
    for reason, n in sorted(r.skipped.items()):
        ui.out.print(f"[dim]left out {n}: {escape(reason)}[/]")
    if r.added or r.present:
        ui.out.print(f"[dim]see them: secondnature calls --scope {escape(sorted(r.scopes)[0])}[/]")
    else:
        ui.err.print(f"[yellow]no chat calls found in {escape(r.path)}[/]: every record was left out (above)")
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    found = db.calls(store, args.scope, limit=args.limit or None, newest_first=True)
    rows = []
    for c in found:
        fb = db.feedback(store, c)
        score = score_of(c, fb)
        rows.append((c, score.value if score else None, len(fb)))
    if args.json:
        print(json.dumps([{"id": c.id, "scope": c.scope, "status": c.status, "model": c.model,
                           "conversation": c.conversation, "source": c.source, "created_at": c.created_at,
                           "value": value, "feedback": n, "user": last_user_text(c.messages), "reply": c.reply}
                          for c, value, n in rows], indent=1))
        return 0
    t = Table(title="calls" + (f" of {escape(args.scope)}" if args.scope else ""), box=box.SIMPLE_HEAD,
              show_lines=True, title_justify="left")
    t.add_column("id / scope", no_wrap=True)
    t.add_column("value", justify="right", no_wrap=True)
    t.add_column("request → reply", ratio=1, min_width=20, overflow="fold")
    for c, value, n in rows:
        ask, reply = _short(last_user_text(c.messages)), _short(c.reply or _tools(c.tool_calls))
        t.add_row(f"{c.id}\n[dim]{escape(c.scope)} · {c.status}[/]",
                  (f"{value:.2f}" if value is not None else "-") + (f"\n[dim]{n} fb[/]" if n else ""),
                  f"{escape(ask)}\n[dim]→[/] {escape(reply)}")
    if not rows:
        t.add_row("-", "", "(no calls yet: `secondnature serve` records them, `secondnature import traces FILE` "
                           "brings in logged ones)")
    ui.out.print(t)
    return 0


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SHOWN else text[:SHOWN - 1] + "…"


def _tools(calls: tuple[dict, ...]) -> str:
    """A reply that is only tool calls, as their names: what the model did instead of answering."""
    names = [str((c.get("function") or {}).get("name", "?")) for c in calls if isinstance(c, dict)]
    return f"(calls {', '.join(names)})" if names else ""
