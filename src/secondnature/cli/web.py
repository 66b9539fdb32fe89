"""`secondnature ui`: the web page for one store, on this machine only."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..weights import home
from . import ui
from .ui import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="a web page of what the store learned: lessons with their evidence and gates, "
                                  "revisions and diffs, curves, traffic; edit, retire, restore, give feedback")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--results", action="append", default=None, metavar="DIR",
                   help="a directory of learning curves (PNG) and bench records (JSON) to show; repeatable "
                        "(default: $SECONDNATURE_HOME/plots, ./bench and ./benchmarks/results where they exist)")
    p.set_defaults(func=cmd_ui)


def result_dirs(given: list[str] | None) -> tuple[Path, ...]:
    if given:
        return tuple(Path(d).expanduser().resolve() for d in given)
    found = [home() / "plots", Path("bench"), Path("benchmarks") / "results"]
    return tuple(d.resolve() for d in found if d.is_dir())


def cmd_ui(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..web import make_ui
    except ImportError as e:
        raise UsageError(f"the page needs the serve extra: pip install 'secondnature[serve]' ({e})") from e
    from ..store import open_store
    store = open_store(args.store)  # opened here so a bad store fails before the server starts
    path, name, where = store.path, store.name, store.where
    store.close()
    opened = {}

    def store_of(_request) -> object:  # one connection, used on the server's event-loop thread only
        if "store" not in opened:
            opened["store"] = open_store(path)
        return opened["store"]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        ui.err.print(f"[yellow]warning:[/] binding {args.host}: the page has no login, so anyone who can reach this "
                     "port can read and change the store. Put it behind `secondnature serve --tenants` instead.")
    app = make_ui(store_of, results=result_dirs(args.results), title=name)
    ui.err.print(f"the page for {where}: http://{args.host}:{args.port}/  (Ctrl-C stops it)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
