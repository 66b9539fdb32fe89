"""`secondnature export skills DIR` and `secondnature export rules FILE`: the store's lessons as files other agents
read (Agent Skills; a CLAUDE.md-style rules file). `secondnature lessons import` reads both back."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from rich.markup import escape

from ..export import Written, write_rules, write_skills
from ..store import open_store
from . import ui


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write lessons as Agent Skills (a SKILL.md a scope, programs as scripts) or as "
                                      "one CLAUDE.md-style rules file; `lessons import` reads them back")
    kinds = p.add_subparsers(dest="kind", required=True)
    s = kinds.add_parser("skills", help="DIR/<name>/SKILL.md for each scope's head (scripts/ beside it)")
    s.add_argument("dir", help="directory to write the skills into (a skill an earlier export wrote is replaced)")
    s.add_argument("--scope", default=None, help="only this scope (default: every scope)")
    s.add_argument("--revision", type=int, default=None, help="this revision instead of the head")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_export)
    r = kinds.add_parser("rules", help="one Markdown file (CLAUDE.md, AGENTS.md, .cursorrules): a section a scope")
    r.add_argument("file", help="the file to write (one an earlier export wrote is replaced; no other file is)")
    r.add_argument("--scope", default=None, help="only this scope (default: every scope)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    if args.kind == "skills":
        done = write_skills(store, args.dir, args.scope, args.revision)
    else:
        done = [write_rules(store, args.file, args.scope)]
    if args.json:
        print(json.dumps([{**asdict(w), "path": str(w.path)} for w in done], indent=1))
        return 0
    for w in done:
        ui.out.print(escape(_said(w)))
    if args.kind == "skills":
        ui.out.print(f"read them back with `secondnature lessons import {escape(args.dir)}`")
    return 0


def _said(w: Written) -> str:
    rev = f" revision {w.revision}" if w.revision is not None else ""
    scripts = f" and {', '.join(w.scripts)}" if w.scripts else ""
    again = " (replaced the earlier export)" if w.replaced else ""
    return f"wrote {w.path}{scripts}: {w.scope}{rev}, {w.lessons} lesson{'' if w.lessons == 1 else 's'}{again}"
