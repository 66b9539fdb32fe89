"""The ASGI app of `secondnature serve`: OpenAI's Chat Completions API in front of an upstream, plus the feedback API.

Routes: `POST /v1/chat/completions` (proxy.py), `GET /v1/models` (the upstream's), `POST /v1/feedback` (a score,
thumbs, a comment or a demonstration for a call or a conversation), `GET /v1/calls` and `GET /v1/calls/{id}` (what
was recorded, with its feedback), `GET /health`. Every route but /health needs the tenant's key when a tenants file
is given; a tenant sees only its own store."""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from ..store import LessonStore, StoreError
from ..store import traffic as db
from ..traffic import DEFAULT_SCOPE, parse_feedback, score_of
from ..web import make_ui
from ..web.routes import KEY_COOKIE
from .proxy import ID_HEADER, Upstream, chat, error, upstream_headers
from .tenants import Tenants


@dataclass(frozen=True)
class ServeConfig:
    upstream: Upstream
    tenants: Tenants
    default_scope: str = DEFAULT_SCOPE
    lesson_tokens: int | None = 400
    results: tuple[Path, ...] = ()   # learning curves and bench records the page at /ui shows


def make_app(config: ServeConfig, *, on_start: Callable[[], None] | None = None,
             on_stop: Callable[[], None] | None = None) -> Starlette:
    """The app; `on_start`/`on_stop` run with the server (the background learner hooks in there)."""
    stores: dict[str, LessonStore] = {}
    client = httpx2.AsyncClient(timeout=config.upstream.timeout_s,
                                limits=httpx2.Limits(max_connections=256, max_keepalive_connections=64))

    def tenant_store(authorization: str | None) -> LessonStore | None:
        tenant = config.tenants.tenant(authorization)
        if tenant is None:
            return None
        if tenant not in stores:  # one connection per tenant, used on the event loop's thread only
            stores[tenant] = config.tenants.open_store(tenant)
        return stores[tenant]

    def store_of(request: Request) -> LessonStore | Response:
        found = tenant_store(request.headers.get("authorization"))
        if found is None:
            return error(401, "missing or unknown API key: send your tenant's key as `Authorization: Bearer KEY` "
                              "(the openai SDK's api_key)", "invalid_request_error", "invalid_api_key")
        return found

    def page_store(request: Request) -> LessonStore | None:
        """The page's store: the tenant's key from the login cookie (a browser) or the header (a script)."""
        key = request.cookies.get(KEY_COOKIE)
        return tenant_store(request.headers.get("authorization") or (f"Bearer {key}" if key else None))

    page = make_ui(page_store, results=config.results,
                   login=lambda key: config.tenants.tenant(f"Bearer {key}") is not None)

    async def completions(request: Request) -> Response:
        store = store_of(request)
        if isinstance(store, Response):
            return store
        body = await _json(request)
        if isinstance(body, Response):
            return body
        try:
            return await chat(client, config.upstream, store, body, request.headers,
                              default_scope=config.default_scope, lesson_tokens=config.lesson_tokens)
        except StoreError as e:
            return error(503, f"the store cannot record this call: {e}", "server_error", "store_unavailable")

    async def models(request: Request) -> Response:
        if isinstance(store := store_of(request), Response):
            return store
        try:
            r = await client.get(f"{config.upstream.url}/models", headers=upstream_headers(config.upstream))
            return Response(r.content, r.status_code, media_type="application/json")
        except httpx2.HTTPError as e:
            return error(502, f"the upstream {config.upstream.url} failed: {type(e).__name__}: {e}", "upstream_error",
                         "upstream_unavailable")

    async def feedback(request: Request) -> Response:
        if isinstance(store := store_of(request), Response):
            return store
        body = await _json(request)
        if isinstance(body, Response):
            return body
        try:
            f = parse_feedback(body)
        except ValueError as e:
            return error(400, str(e))
        if f.call_id and db.get_call(store, f.call_id) is None:
            return error(404, f"no call {f.call_id!r} here: use the `id` of a response this server returned "
                              f"(also in its {ID_HEADER} header)", code="call_not_found")
        if f.conversation and not f.call_id and not db.calls(store, conversation=f.conversation, limit=1):
            return error(404, f"no conversation {f.conversation!r} here: send its id with each call as "
                              f"extra_body={{'secondnature': {{'conversation': ...}}}}", code="conversation_not_found")
        saved = db.add_feedback(store, f)
        return JSONResponse({"object": "feedback", **asdict(saved)})

    async def one_call(request: Request) -> Response:
        if isinstance(store := store_of(request), Response):
            return store
        call = db.get_call(store, request.path_params["call_id"])
        if call is None:
            return error(404, f"no call {request.path_params['call_id']!r} here", code="call_not_found")
        return JSONResponse(call_json(store, call))

    async def list_calls(request: Request) -> Response:
        if isinstance(store := store_of(request), Response):
            return store
        q = request.query_params
        try:
            limit, offset = min(1000, int(q.get("limit", 100))), max(0, int(q.get("offset", 0)))
        except ValueError:
            return error(400, "limit and offset must be whole numbers")
        found = db.calls(store, q.get("scope"), conversation=q.get("conversation"), limit=limit, offset=offset,
                         newest_first=True)
        return JSONResponse({"object": "list", "data": [call_json(store, c) for c in found]})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if on_start:
            on_start()
        try:
            yield
        finally:
            if on_stop:
                on_stop()
            await client.aclose()
            for s in stores.values():
                s.close()

    return Starlette(routes=[
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/feedback", feedback, methods=["POST"]),
        Route("/v1/calls", list_calls, methods=["GET"]),
        Route("/v1/calls/{call_id}", one_call, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Mount("/ui", app=page),  # the web page, each tenant seeing its own store
    ], lifespan=lifespan)


async def _json(request: Request) -> dict | Response:
    try:
        body = await request.json()
    except ValueError:
        return error(400, "the body is not JSON")
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object")
    return body


def call_json(store: LessonStore, call) -> dict:
    fb = db.feedback(store, call)
    s = score_of(call, fb)
    return {"object": "call", **asdict(call), "score": s.value if s else None,
            "feedback": [asdict(f) for f in fb]}
