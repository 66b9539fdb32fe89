"""`secondnature serve` (the OpenAI-compatible proxy that learns from traffic) and `secondnature feedback` (a verdict
on a recorded call from the command line). The server's parts live in secondnature.serve (the `serve` extra)."""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
from dataclasses import asdict
from pathlib import Path

from ..store import open_store
from ..store import traffic as db
from ..store.postgres import is_url
from ..traffic import DEFAULT_SCOPE, feedback_value
from ..types import Feedback
from . import ui
from .ui import UsageError, token_budget


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="an OpenAI-compatible proxy that injects lessons, records every call, takes "
                                     "feedback and learns from the traffic")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--upstream", default=None, help="the OpenAI-compatible endpoint to forward to (base URL, "
                                                        "e.g. https://api.openai.com/v1)")
    where.add_argument("--policy", default=None, help="serve the embedded model instead (packaged name or GGUF path; "
                                                      "default when no --upstream: the packaged 0.5B)")
    p.add_argument("--upstream-key-env", default=None, metavar="VAR",
                   help="environment variable holding the upstream's API key (clients' keys never go upstream)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tenants", default=None, metavar="FILE",
                   help='JSON mapping tenant names to API keys ({"acme": "sk-...", "beta": "sha256:<hex>"}); each '
                        "tenant gets its own store under --tenant-dir. Without it: one tenant, the --store, any key")
    p.add_argument("--tenant-dir", default=None, metavar="DIR|URL",
                   help="where tenants' stores go: a directory of one file per tenant (default: tenants/ beside the "
                        "file), or a postgresql://... database, one schema per tenant (tenant_<name>, made if "
                        "missing; docs/postgres.md)")
    p.add_argument("--scope", default=DEFAULT_SCOPE, help="scope of a request that names none and resembles no scope")
    p.add_argument("--lesson-tokens", type=token_budget, default=400, help="token budget of the injected lessons")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds an upstream call may take")
    p.add_argument("--prices", default=None, metavar="IN,OUT",
                   help="the upstream's price per million prompt and completion tokens, e.g. 0.15,0.60: each call's "
                        "cost is recorded (an upstream that reports usage.cost is believed instead)")
    learn = p.add_argument_group("learning from the traffic (replays are scored by the judge)")
    learn.add_argument("--judge", default=None, help="judge model: packaged name, GGUF path, or with --judge-base-url "
                                                     "an endpoint's model name")
    learn.add_argument("--judge-base-url", default=None)
    learn.add_argument("--rubric", default=None, metavar="FILE", help="what a good reply is, for the judge")
    learn.add_argument("--pairwise", action="store_true",
                       help="the judge compares each replay with the reply the application got (both orders) "
                            "instead of scoring it alone")
    learn.add_argument("--reflector", default="reflector", help="reflector model (default: the packaged 1.5B)")
    learn.add_argument("--reflector-base-url", default=None)
    learn.add_argument("--learn-every", type=float, default=60.0, help="seconds between looks at the traffic")
    learn.add_argument("--min-calls", type=int, default=24, help="finished calls a scope needs before learning")
    learn.add_argument("--spend", type=int, default=400, help="most replays (upstream calls) per hour, per tenant")
    learn.add_argument("--spend-cost", type=float, default=None,
                       help="and at most this cost of replays per hour, per tenant (needs --prices)")
    learn.add_argument("--no-learn", action="store_true", help="record calls and feedback only")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("feedback", help="give feedback on a recorded call (or a whole conversation)")
    p.add_argument("id", help="the call's id (a response's `id`), or with --conversation a conversation id")
    p.add_argument("--conversation", action="store_true", help="ID is a conversation: the feedback is for all its calls")
    p.add_argument("--score", default=None, help="a value in [0, 1]")
    p.add_argument("--thumbs", choices=["up", "down"], default=None)
    p.add_argument("--comment", default="", help="what was good or wrong, in words: reflection reads it")
    p.add_argument("--demonstration", default="", help="a better reply")
    p.add_argument("--source", default="person", choices=["person", "app", "judge", "majority", "checker"])
    p.add_argument("--tenants", default=None, metavar="FILE", help="with --tenant: the tenants file serve uses")
    p.add_argument("--tenant", default=None)
    p.add_argument("--tenant-dir", default=None, metavar="DIR|URL", help="with --tenants: the --tenant-dir serve uses")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_feedback)


def cmd_feedback(args: argparse.Namespace) -> int:
    if bool(args.tenants) != bool(args.tenant) or (args.tenant_dir and not args.tenants):
        raise UsageError("--tenant and --tenants go together (and --tenant-dir with them): the tenant's name and the "
                         "tenants file (and --tenant-dir) serve was given")
    if args.tenant:
        from ..serve.tenants import load_tenants
        tenants = load_tenants(args.tenants, store_dir=args.tenant_dir)
        if args.tenant not in tenants.names():
            raise UsageError(f"no tenant {args.tenant!r} in {args.tenants} ({', '.join(tenants.names())})")
        store = tenants.open_store(args.tenant)
    else:
        store = open_store(args.store)
    try:
        value = feedback_value(args.score, args.thumbs)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if value is None and not args.comment.strip() and not args.demonstration.strip():
        raise UsageError("give --score, --thumbs, --comment or --demonstration")
    if args.conversation:
        if not db.calls(store, conversation=args.id, limit=1):
            raise UsageError(f"no call of conversation {args.id!r} in {store.path}")
        f = Feedback("", args.id, value, args.comment, args.demonstration, args.source)
    else:
        if db.get_call(store, args.id) is None:
            raise UsageError(f"no call {args.id!r} in {store.path}; `secondnature calls` lists them")
        f = Feedback(args.id, "", value, args.comment, args.demonstration, args.source)
    saved = db.add_feedback(store, f)
    if args.json:
        print(json.dumps(asdict(saved)))
    else:
        ui.out.print(f"feedback {saved.id} on {args.id}: " + (f"{value:.2f}" if value is not None else "no value")
                     + (f", {len(args.comment)} characters of comment" if args.comment else "")
                     + (", a demonstration" if args.demonstration else ""))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..serve import ServeConfig, Upstream, load_tenants, make_app
    except ImportError as e:
        raise UsageError(f"serve needs its extra: pip install 'secondnature[serve]' ({e})") from e
    if args.tenants and is_url(args.store):
        raise UsageError("with --tenants, --store is not used: each tenant has its own store under --tenant-dir. To "
                         "keep the tenants in PostgreSQL, give the database there: --tenant-dir postgresql://... "
                         "(a schema per tenant, docs/postgres.md)")
    tenants = load_tenants(args.tenants, store=args.store, store_dir=args.tenant_dir)
    if tenants.open and not _loopback(args.host):
        ui.err.print(f"[yellow]warning:[/] binding {args.host} without --tenants: anyone who can reach this port can "
                     "use the upstream and read the recorded traffic")
    key = ""
    if args.upstream_key_env:
        key = os.environ.get(args.upstream_key_env, "")
        if not key:
            raise UsageError(f"--upstream-key-env {args.upstream_key_env}: that variable is not set or empty")
    embedded = None
    if args.upstream:
        url = args.upstream.rstrip("/")
    else:
        from ..serve.upstream import start_embedded
        ui.err.print(f"starting llama.cpp's server for {args.policy or 'default'} ...")
        try:
            embedded = start_embedded(args.policy or "default")
        except RuntimeError as e:
            raise UsageError(str(e)) from e
        url = embedded.url
    upstream = Upstream(url, key, args.timeout, _prices(args.prices))
    if args.spend_cost is not None and upstream.prices is None:
        raise UsageError("--spend-cost needs --prices IN,OUT to know what a replay costs")
    learner = _learner(args, tenants, upstream)
    from .web import result_dirs
    app = make_app(ServeConfig(upstream, tenants, args.scope, args.lesson_tokens, result_dirs(None)),
                   on_start=learner.start if learner else None, on_stop=learner.stop if learner else None)
    ui.err.print(f"serving http://{args.host}:{args.port}/v1 -> {url} (the page: /ui); tenants: {', '.join(tenants.names())}; "
                 f"learning: {'on' if learner else 'off'}")
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        if embedded:
            embedded.stop()
    return 0


def _prices(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        pin, pout = (float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--prices {text!r}: give two numbers, the price per million prompt and completion tokens, "
                         "e.g. --prices 0.15,0.60") from None
    if min(pin, pout) < 0:
        raise UsageError("--prices cannot be negative")
    return pin, pout


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _learner(args: argparse.Namespace, tenants, upstream):
    """The background learner, or None (said why) when learning is off or has no judge to score replays."""
    if args.no_learn:
        return None
    if not (args.judge and args.rubric):
        ui.err.print("learning is off: replays need a judge (--judge MODEL --rubric FILE). Calls and feedback are "
                     "recorded; learn from them later with `secondnature learn traffic:SCOPE --judge ... --rubric ...`")
        return None
    from ..judge import judge_reward, pairwise_reward
    from ..models import OpenAIModel
    from ..serve.learner import Learner, LearnerConfig
    rubric = Path(args.rubric).read_text()
    judge = ui.load_model(args.judge, base_url=args.judge_base_url, n_ctx=8192)
    reflector = ui.load_model(args.reflector, base_url=args.reflector_base_url, n_ctx=8192)

    def policy(model: str):
        return OpenAIModel(model or "default", base_url=upstream.url, api_key=upstream.key or "none")
    config = LearnerConfig(every_s=args.learn_every, min_calls=args.min_calls, spend_per_hour=args.spend,
                           spend_cost_per_hour=args.spend_cost, prices=upstream.prices)
    reward = (pairwise_reward if args.pairwise else judge_reward)(judge, rubric)  # pairwise: against the recorded reply
    return Learner(tenants, policy, reflector, reward, config)
