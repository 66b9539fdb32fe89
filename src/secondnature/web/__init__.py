"""The web page: what a store learned, why, and the hand changes a person makes to it.

Server-rendered (Jinja2, every value escaped), a little JavaScript for keys and confirmations, nothing fetched from
another origin (the Content-Security-Policy forbids it), one page of rows at a time. `secondnature ui` serves it for
one store on 127.0.0.1; `serve` mounts it at /ui for each tenant's own store (`make_ui(store_of=...)`).

Every change (edit, retire, restore, promote, rollback, feedback) is a form POST carrying the page's token, so
another site cannot make a browser post one; changes go through `hand` exactly as the command line's do."""
from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..store import LessonStore
from . import routes

HERE = Path(__file__).parent
StoreOf = Callable[[Request], "LessonStore | None"]

SECURITY_HEADERS = {
    # nothing loads from elsewhere and no inline script runs: a lesson that smuggles <script> in is text anyway
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def environment() -> Environment:
    env = Environment(loader=PackageLoader("secondnature.web", "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v, sign=False: "-" if v is None else f"{100 * v:{'+' if sign else ''}.1f}"
    env.filters["signed"] = lambda v: "-" if v is None else f"{v:+.2f}"
    return env


def make_ui(store_of: StoreOf, *, results: tuple[Path, ...] = (), login: Callable[[str], bool] | None = None,
            title: str = "secondnature") -> Starlette:
    """The page's ASGI app. `store_of(request)` is the store a request may see, or None (then `login` is asked for a
    key through the login form; without `login` the page is open, as for one local store)."""
    token = secrets.token_urlsafe(24)
    env = environment()

    def page(request: Request, template: str, code: int = 200, **data) -> Response:
        base = request.scope.get("root_path", "")
        html = env.get_template(template).render(request=request, base=base, token=token, title=title,
                                                 msg=request.query_params.get("msg", ""),
                                                 error=request.query_params.get("error", ""), **data)
        return HTMLResponse(html, code, headers=SECURITY_HEADERS)

    def back(request: Request, path: str, **params: str) -> Response:
        query = urlencode({k: v for k, v in params.items() if v})
        return RedirectResponse(f"{request.scope.get('root_path', '')}{path}" + (f"?{query}" if query else ""), 303)

    ctx = routes.Context(page=page, back=back, token=token, results=results, store_of=store_of, login=login)
    app = Starlette(routes=[*routes.table(ctx),
                            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static")])
    return app
