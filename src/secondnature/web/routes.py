"""The page's routes: read the request, ask `views`/`store.pages` for the data, render a template; a POST checks the
page's token, makes its change through `hand` (or records feedback) and redirects back with what happened."""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from .. import hand
from ..inject import EXAMPLE_PREFIX, INSTRUCTION_PREFIX
from ..skills import SKILL_PREFIX
from ..store import LessonStore, StoreError, traffic
from ..store import pages as db
from ..traffic import parse_feedback, score_of
from . import views

KEY_COOKIE = "sn_key"
STARTS = {"skill": SKILL_PREFIX, "example": EXAMPLE_PREFIX, "instruction": INSTRUCTION_PREFIX}


@dataclass(frozen=True)
class Context:
    page: Callable[..., Response]
    back: Callable[..., Response]
    token: str
    results: tuple[Path, ...]
    store_of: Callable[[Request], LessonStore | None]
    login: Callable[[str], bool] | None


def _int(request: Request, name: str, default: int | None = 1) -> int | None:
    try:
        return int(request.query_params.get(name, ""))
    except ValueError:
        return default


def table(ctx: Context) -> list[Route]:
    def reads(handler: Callable[[Request, LessonStore], Response]) -> Callable:
        async def endpoint(request: Request) -> Response:
            store = ctx.store_of(request)
            if store is None:
                return ctx.back(request, "/login", next=request.url.path)
            try:
                return handler(request, store)
            except (hand.HandError, StoreError) as e:
                return ctx.page(request, "error.html", 404 if str(e).startswith("no ") else 400, problem=str(e))
        return endpoint

    def writes(handler: Callable[[Request, LessonStore, dict], Response]) -> Callable:
        async def endpoint(request: Request) -> Response:
            store = ctx.store_of(request)
            if store is None:
                return ctx.back(request, "/login")
            form = dict(await request.form())
            if form.get("token") != ctx.token:  # a form from another site (or an old page): refuse, change nothing
                return ctx.page(request, "error.html", 403, problem="this form is out of date or came from another "
                                                                    "site; reload the page and try again")
            try:  # on the event loop's thread: a store's connection is used from one thread (its calls are short)
                return handler(request, store, form)
            except (hand.HandError, StoreError, ValueError) as e:
                return ctx.back(request, form.get("from") or "/lessons", error=str(e))
        return endpoint

    # ------------------------------------------------------------ lessons
    def lessons(request: Request, store: LessonStore) -> Response:
        q = request.query_params
        scope, status, kind, query = q.get("scope") or None, q.get("status", "active"), q.get("kind", ""), q.get("q", "")
        found = db.lessons(store, scope=scope, status=None if status == "all" else status, query=query,
                           starts=STARTS.get(kind), starts_not=tuple(STARTS.values()) if kind == "rule" else (),
                           page=_int(request, "page") or 1)
        return ctx.page(request, "lessons.html", found=found, rows=views.rows(store, found.rows), scopes=db.scopes(store),
                        scope=scope or "", status=status, kind=kind, query=query, kinds=views.KINDS,
                        heads={s: h.id for s in store.scopes() if (h := store.head(s))})

    def lesson(request: Request, store: LessonStore) -> Response:
        return ctx.page(request, "lesson.html", v=views.lesson_page(store, request.path_params["id"]))

    def edit(request: Request, store: LessonStore, form: dict) -> Response:
        lid = request.path_params["id"]
        done = hand.edit(store, lid, str(form.get("text", "")), force=form.get("force") == "on")
        return ctx.back(request, f"/lessons/{done.lesson.id if done else lid}",
                        msg=done.message if done else "unchanged")

    def retire(request: Request, store: LessonStore, form: dict) -> Response:
        done = hand.remove(store, request.path_params["id"])
        return ctx.back(request, f"/lessons/{request.path_params['id']}", msg=done.message)

    def restore(request: Request, store: LessonStore, form: dict) -> Response:
        done = hand.restore_lesson(store, request.path_params["id"])
        return ctx.back(request, f"/lessons/{request.path_params['id']}", msg=done.message)

    # ------------------------------------------------------------ revisions
    def revisions(request: Request, store: LessonStore) -> Response:
        scope = request.query_params.get("scope") or None
        revs = list(reversed(store.revisions(scope)))
        size, page = db.PAGE, _int(request, "page") or 1
        found = db.Page(tuple(revs[(page - 1) * size: page * size]), len(revs), page, size)
        heads = {s: h.id for s in store.scopes() if (h := store.head(s))}
        return ctx.page(request, "revisions.html", found=found, scopes=db.scopes(store), scope=scope or "", heads=heads)

    def diff(request: Request, store: LessonStore) -> Response:
        a, b = _int(request, "a", None), _int(request, "b", None)
        if a is None or b is None:
            raise hand.HandError("no revisions to compare: pick two on the revisions page")
        ra, rb = hand.revision_of(store, a), hand.revision_of(store, b)
        la, lb = store.revision_lessons(ra), store.revision_lessons(rb)
        matcher = difflib.SequenceMatcher(a=[x.id for x in la], b=[x.id for x in lb], autojunk=False)
        return ctx.page(request, "diff.html", a=ra, b=rb, ops=matcher.get_opcodes(), la=la, lb=lb,
                        lines=hand.diff(store, a, b))

    def rev_restore(request: Request, store: LessonStore, form: dict) -> Response:
        action, rid = request.path_params["action"], request.path_params["rev"]
        if action not in ("restore", "promote"):
            raise hand.HandError(f"a revision can be restored or promoted, not {action!r}")
        done = hand.promote(store, rid) if action == "promote" else hand.restore_revision(store, rid)
        return ctx.back(request, "/revisions", scope=done.revision.scope, msg=done.message)

    def rollback(request: Request, store: LessonStore, form: dict) -> Response:
        done = hand.rollback(store, str(form.get("scope") or request.query_params.get("scope", "")))
        return ctx.back(request, "/revisions", scope=done.revision.scope, msg=done.message)

    # ------------------------------------------------------------ gates and rollouts
    def gates(request: Request, store: LessonStore) -> Response:
        q = request.query_params
        found = db.gates(store, scope=q.get("scope") or None, decision=q.get("decision") or None,
                         page=_int(request, "page") or 1)
        return ctx.page(request, "gates.html", found=found, scopes=db.scopes(store), scope=q.get("scope", ""),
                        decision=q.get("decision", ""))

    def gate(request: Request, store: LessonStore) -> Response:
        g = db.gate(store, request.path_params["id"])
        if g is None:
            raise hand.HandError(f"no gate {request.path_params['id']}")
        return ctx.page(request, "gate.html", g=g, items=views.gate_items(store, g))

    def rollouts(request: Request, store: LessonStore) -> Response:
        q = request.query_params
        found = db.rollouts(store, scope=q.get("scope") or None, purpose=q.get("purpose") or None,
                            task=q.get("task") or None, page=_int(request, "page") or 1)
        return ctx.page(request, "rollouts.html", found=found, scopes=db.scopes(store), scope=q.get("scope", ""),
                        purpose=q.get("purpose", ""), task=q.get("task", ""))

    def one_rollout(request: Request, store: LessonStore) -> Response:
        r = store.rollout(request.path_params["id"])
        if r is None:
            raise hand.HandError(f"no rollout {request.path_params['id']!r}")
        return ctx.page(request, "rollout.html", r=r)

    # ------------------------------------------------------------ curves, traffic
    def curves(request: Request, store: LessonStore) -> Response:
        found = views.results(ctx.results)
        runs = db.runs(store)
        tables = {p.name: views.record_table(p) for p in found if p.suffix == ".json"}
        return ctx.page(request, "curves.html", pngs=[p for p in found if p.suffix == ".png"],
                        records=[p for p in found if p.suffix == ".json"], tables=tables, runs=runs,
                        dirs=ctx.results)

    def result_file(request: Request, store: LessonStore) -> Response:
        name = request.path_params["name"]
        path = next((p for p in views.results(ctx.results) if p.name == name), None)  # only files the page lists
        if path is None:
            raise hand.HandError(f"no result {name!r}")
        return FileResponse(path, headers={"x-content-type-options": "nosniff", "content-security-policy":
                                           "default-src 'none'"})

    def calls(request: Request, store: LessonStore) -> Response:
        scope = request.query_params.get("scope") or None
        found = db.calls(store, scope=scope, page=_int(request, "page") or 1)
        return ctx.page(request, "calls.html", found=found, scope=scope or "", scopes=traffic.traffic_scopes(store),
                        counts=db.feedback_counts(store, [c.id for c in found.rows]))

    def call(request: Request, store: LessonStore) -> Response:
        c = traffic.get_call(store, request.path_params["id"])
        if c is None:
            raise hand.HandError(f"no call {request.path_params['id']!r} here")
        fb = traffic.feedback(store, c)
        rev = store.revision(c.revision) if c.revision is not None else None
        return ctx.page(request, "call.html", c=c, feedback=fb, score=score_of(c, fb), revision=rev,
                        lessons=store.revision_lessons(rev) if rev else [])

    def give_feedback(request: Request, store: LessonStore, form: dict) -> Response:
        c = traffic.get_call(store, request.path_params["id"])
        if c is None:
            raise hand.HandError(f"no call {request.path_params['id']!r} here")
        # the API's own check: the same values and limits, a person's feedback
        f = parse_feedback({"id": c.id, "thumbs": form.get("thumbs") or None, "score": form.get("score") or None,
                            "comment": str(form.get("comment", "")).strip(),
                            "demonstration": str(form.get("demonstration", "")).strip()}, sources=("person",))
        traffic.add_feedback(store, f)
        return ctx.back(request, f"/calls/{c.id}", msg="feedback saved")

    # ------------------------------------------------------------ login (serve's tenants)
    async def login(request: Request) -> Response:
        if request.method == "GET":
            return ctx.page(request, "login.html", next=request.query_params.get("next", ""))
        form = await request.form()
        key = str(form.get("key", ""))
        if ctx.login is None or not ctx.login(key):
            return ctx.page(request, "login.html", 401, next=form.get("next", ""), problem="that key is not known here")
        nxt = str(form.get("next", ""))
        base = request.scope.get("root_path", "")
        resp = ctx.back(request, nxt[len(base):] if nxt.startswith(base + "/") else "/lessons")
        resp.set_cookie(KEY_COOKIE, key, httponly=True, samesite="strict", path=base or "/",
                        secure=request.url.scheme == "https")
        return resp

    async def logout(request: Request) -> Response:
        resp = ctx.back(request, "/login")
        resp.delete_cookie(KEY_COOKIE, path=request.scope.get("root_path", "") or "/")
        return resp

    async def index(request: Request) -> Response:
        return ctx.back(request, "/lessons")

    return [
        Route("/", index), Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout, methods=["POST"]),
        Route("/lessons", reads(lessons)), Route("/lessons/{id}", reads(lesson)),
        Route("/lessons/{id}/edit", writes(edit), methods=["POST"]),
        Route("/lessons/{id}/retire", writes(retire), methods=["POST"]),
        Route("/lessons/{id}/restore", writes(restore), methods=["POST"]),
        Route("/revisions", reads(revisions)), Route("/revisions/diff", reads(diff)),
        Route("/revisions/rollback", writes(rollback), methods=["POST"]),
        Route("/revisions/{rev:int}/{action:str}", writes(rev_restore), methods=["POST"]),
        Route("/gates", reads(gates)), Route("/gates/{id:int}", reads(gate)),
        Route("/rollouts", reads(rollouts)), Route("/rollouts/{id}", reads(one_rollout)),
        Route("/curves", reads(curves)), Route("/results/{name}", reads(result_file)),
        Route("/calls", reads(calls)), Route("/calls/{id}", reads(call)),
        Route("/calls/{id}/feedback", writes(give_feedback), methods=["POST"]),
    ]
