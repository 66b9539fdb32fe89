"""`secondnature mcp`: the store as Model Context Protocol tools (mcp_server.py), over stdio or streamable HTTP."""
from __future__ import annotations

import argparse

from rich.markup import escape

from . import ui
from .ui import UsageError

LOCAL = ("127.0.0.1", "localhost", "::1")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mcp", help="serve the store's lessons, feedback and lesson proposals as Model Context Protocol "
                                   "tools, for coding agents and desktop assistants (docs/mcp.md)")
    # also after the command, where a client's config writes it: `secondnature mcp --store PATH`
    p.add_argument("--store", dest="mcp_store", default=None, metavar="PATH",
                   help="store file (default: the top-level --store, else $SECONDNATURE_HOME/store.db)")
    p.add_argument("--http", default=None, metavar="HOST:PORT",
                   help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (e.g. 127.0.0.1:8766)")
    p.set_defaults(func=cmd_mcp)


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--http wants HOST:PORT, e.g. 127.0.0.1:8766, not {text!r}")
    return host, int(port)


def cmd_mcp(args: argparse.Namespace) -> int:
    http = host_port(args.http) if args.http else None
    try:  # checked here, so a missing SDK fails with the fix on the terminal rather than in a client's log
        import mcp.server.mcpserver  # noqa: F401
    except ImportError as e:  # printed here: the message's [mcp] must not be read as console markup
        ui.err.print(escape(f"error: `secondnature mcp` needs the Model Context Protocol SDK 2.x: pip install "
                            f"'secondnature[mcp]' ({e})"), style="red")
        return 2
    from ..mcp_server import serve
    from ..store import open_store
    store = open_store(args.mcp_store or args.store)  # opened here so a bad store fails before a client connects
    path, where = store.path, store.where
    store.close()
    if http is not None:
        if http[0] not in LOCAL:
            ui.err.print(f"[yellow]warning:[/] binding {http[0]}: the MCP server has no login, so anyone who can reach "
                         f"this port can read the lessons, record feedback and propose lessons.")
        ui.err.print(f"MCP over streamable HTTP for {where}: http://{http[0]}:{http[1]}/mcp  (Ctrl-C stops it)")
    serve(path, http)  # stdio: nothing else may be written to stdout, which carries the protocol
    return 0
