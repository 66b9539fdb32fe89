"""`secondnature mcp`: the store as Model Context Protocol tools, so a coding agent or a desktop assistant reads the
lessons a scope learned, scores the replies it got through `serve`, and proposes a lesson of its own.

The lessons handed out are a scope's head as `serve` injects them: words only, the most gain per token first under
a token budget, numbered in a stable order. A skill is code the policy calls inside our sandbox, which a client
cannot call (`secondnature export skills` hands skills out as scripts); an instruction lesson replaces a task's
instruction, and a client's instruction is its own. Both are left out of the block and named by id.

A proposed lesson passes the lesson screen and is stored as "proposed": in no revision, so never injected. It
waits for the gate: the next learning step of its scope (`secondnature learn`, or serve's learner for a served
scope) tests it against the head on paired validation items (propose.proposed, learn.settle). If it wins it joins
the head under the id it was given; if it loses it is "rejected", with the gate's reason in its note.

The tools are plain functions of a store, raising `ToolProblem` with what to do instead; `build_server` wraps them
for the official `mcp` SDK (imported there only, so the rest of the package never needs it).
"""
# no `from __future__ import annotations`: the SDK reads the tools' annotations, which name types imported inside
# build_server (the SDK is imported there only), so they are evaluated where the tools are defined
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from . import inject, retrieve
from .learn import scope_tags
from .redact import redact
from .screen import attack_in, problem_with
from .skills import is_skill
from .store import LessonStore, StoreError, open_store
from .store import traffic as db
from .text import DUPLICATE, approx_tokens, similarity
from .traffic import SCOPE_NAME, parse_feedback
from .types import Edit, Feedback, Lesson, Reflection

DEFAULT_BUDGET = 400
MAX_BUDGET = 100_000
RELEVANT = 5               # lessons a query that resembles no scope gets, by relevance, from every scope's head
PROPOSAL_PREFIX = "proposal-"  # a proposal's record (who sent it, and why) is a reflection with this id prefix
WAITING = "proposed: waits for the gate of its scope's next learning step"
MAX_WHY = 2_000            # characters of a proposal's reason kept
FEEDBACK_SOURCES = ("person", "app")  # judges and checkers score traffic inside serve, not through a client
TOKENS_NOTE = ("Tokens are estimated without a tokenizer at about 3 characters a token, which over-counts for "
               "English text, so the block fits a budget of real tokens.")


class ToolProblem(ValueError):
    """A request a tool refuses, with what to do instead. Nothing was changed."""


@dataclass(frozen=True)
class LessonBlock:
    """A scope's lessons as the policy reads them, under a token budget."""

    text: str                        # the numbered lessons under their header ('' when none fit or none exist)
    lesson_ids: tuple[str, ...]      # the lessons in `text`, in its order
    dropped_ids: tuple[str, ...]     # lessons that did not fit the budget (least gain per token dropped first)
    left_out_ids: tuple[str, ...]    # skills and instruction lessons: not part of the block (the module says why)
    scope: str | None                # the scope the lessons are from (None: found by relevance across scopes)
    revision: int | None             # its head revision
    tokens: int                      # estimated tokens of `text`
    budget: int
    chosen_by: str                   # "scope" (named), "query" (routed to the scope it resembles), "relevance"


@dataclass(frozen=True)
class ScopeInfo:
    scope: str
    revision: int | None    # the head revision (None: nothing accepted yet)
    updated_at: str         # when the head was made
    lessons: int            # lessons in the head
    tokens: int             # estimated tokens of all of them as the lessons tool renders them, without a budget
    proposed: int           # proposals waiting for the gate


@dataclass(frozen=True)
class ProposalInfo:
    id: str
    scope: str
    text: str
    status: str   # proposed (waits for the gate), active (won: in the head), rejected (lost), retired (won, later removed)
    note: str     # what it waits for, or the gate's reason for rejecting it
    why: str      # the reason its author gave
    author: str   # the MCP client that sent it, by the name it gave
    proposed_at: str


def usable(lessons: list[Lesson]) -> list[Lesson]:
    """The lessons a client can follow as they are: words, not a skill to call or a replacement for its own
    instruction."""
    return [x for x in lessons if not is_skill(x.text) and not inject.is_instruction(x)]


def known_scopes(store: LessonStore) -> list[str]:
    """Scopes with a revision, recorded traffic or a proposal."""
    return sorted(set(store.scopes()) | set(db.traffic_scopes(store))
                  | {x.scope for x in store.lessons(status="proposed")})


def get_lessons(store: LessonStore, scope: str | None = None, query: str | None = None,
                budget: int = DEFAULT_BUDGET) -> LessonBlock:
    """A scope's head lessons (or, given only a query, the scope it resembles) that fit `budget` estimated tokens."""
    if not 0 <= budget <= MAX_BUDGET:
        raise ToolProblem(f"budget must be a number of tokens from 0 to {MAX_BUDGET}, not {budget}; {DEFAULT_BUDGET} "
                          f"is the default")
    scope, query = (scope or "").strip() or None, (query or "").strip()
    if scope is None and not query:
        raise ToolProblem(f"name a scope or give a query (the user's request) to route by; scopes here: "
                          f"{', '.join(known_scopes(store)) or 'none yet'}")
    chosen_by = "scope" if scope else "query"
    if scope and store.head(scope) is None and scope not in known_scopes(store):
        raise ToolProblem(f"no scope {scope!r} in this store; scopes here: {', '.join(known_scopes(store)) or 'none'}"
                          f" (the scopes tool lists them with their lessons)")
    scope = scope or retrieve.route(store, query)
    head = store.head(scope) if scope else None
    if head is not None or chosen_by == "scope":
        pool = store.revision_lessons(head)
    else:  # no scope resembles the query: the most relevant lessons of every scope's head, as retrieval does
        scope, chosen_by = None, "relevance"
        pool = retrieve.relevant(store, query, {x.id: x for x in usable(store.live_lessons())}, RELEVANT)
    words = usable(pool)
    kept = inject.select(words, budget, approx_tokens)
    text = inject.lessons_block(kept)
    return LessonBlock(text, tuple(x.id for x in kept), tuple(x.id for x in words if x not in kept),
                       tuple(x.id for x in pool if x not in words), scope, head.id if head else None,
                       approx_tokens(text) if text else 0, budget, chosen_by)


def list_scopes(store: LessonStore) -> list[ScopeInfo]:
    waiting = [x.scope for x in store.lessons(status="proposed")]
    out = []
    for scope in known_scopes(store):
        head = store.head(scope)
        found = store.revision_lessons(head)
        text = inject.lessons_block(usable(found))
        out.append(ScopeInfo(scope, head.id if head else None, head.created_at if head else "", len(found),
                             approx_tokens(text) if text else 0, waiting.count(scope)))
    return out


def record_feedback(store: LessonStore, call_id: str = "", conversation: str = "", thumbs: str | None = None,
                    score: float | None = None, comment: str = "", demonstration: str = "",
                    source: str = "person") -> Feedback:
    """A verdict on a recorded call or conversation, validated as serve's /v1/feedback validates it, then stored."""
    if not (call_id or "").strip() and not (conversation or "").strip():
        raise ToolProblem("say what the feedback is about: call_id (the `id` of a chat completion `secondnature serve` "
                          "returned) or conversation (the id the application sent with its calls)")
    try:
        f = parse_feedback({"id": (call_id or "").strip(), "conversation": (conversation or "").strip(),
                            "thumbs": thumbs, "score": score, "comment": comment, "demonstration": demonstration,
                            "source": source}, FEEDBACK_SOURCES)
    except ValueError as e:
        raise ToolProblem(f"{e}; nothing was recorded") from e
    if f.call_id and db.get_call(store, f.call_id) is None:
        raise ToolProblem(f"no call {f.call_id!r} in this store: give the `id` of a chat completion `secondnature "
                          f"serve` returned with this store (also in its x-secondnature-call-id header); "
                          f"`secondnature calls` lists them. Nothing was recorded.")
    if f.conversation and not db.calls(store, conversation=f.conversation, limit=1):
        raise ToolProblem(f"no conversation {f.conversation!r} in this store: it is the id an application sends with "
                          f"each call (extra_body={{'secondnature': {{'conversation': ...}}}}). Nothing was recorded.")
    return db.add_feedback(store, f)


def submit_proposal(store: LessonStore, scope: str, text: str, why: str = "", author: str = "mcp client") -> ProposalInfo:
    """Store a lesson that passes the screen as "proposed": it waits for its scope's next gate."""
    scope, text = (scope or "").strip(), (text or "").strip()
    if not SCOPE_NAME.match(scope):
        raise ToolProblem(f"{scope!r} is not a scope name: letters, digits and _ . / : + - (at most 80 characters), "
                          f"usually a task set's name or serve's route; the scopes tool lists those here")
    if attack := attack_in(text):
        raise ToolProblem(f"the lesson screen refuses this text ({attack}). A lesson is advice for the next attempt at "
                          f"a task; it may not address the model's role or rules, ask for secrets or name addresses. "
                          f"Nothing was stored.")
    if shape := problem_with(text):
        raise ToolProblem(f"this is not a lesson yet: {shape}. Write one piece of advice for the next attempt in "
                          f"plain words (4 to 80 words; a worked example starts with 'Worked example.' and may have "
                          f"160). Nothing was stored.")
    head = store.revision_lessons(store.head(scope))
    for x in [*head, *store.lessons(scope, "proposed")]:
        if similarity(x.text, text) >= DUPLICATE:
            where = "in the head already" if x in head else "waiting for its gate already"
            raise ToolProblem(f"{x.id} says nearly the same and is {where}: {x.text[:100]!r}. Nothing was stored.")
    rid = PROPOSAL_PREFIX + uuid.uuid4().hex[:12]
    with store.transaction():
        # its record, as the loop's lessons have theirs: who sent it (the model field), why (the prompt), the text
        store.add_reflection(Reflection(rid, author, redact((why or "").strip()[:MAX_WHY]), text,
                                        edits=(Edit("add", text),)), run_id=None, scope=scope)
        lesson = store.add_lesson(Lesson("", text, scope, reflection_id=rid, status="proposed", tags=scope_tags(scope),
                                         note=WAITING))
    return proposal_info(store, lesson)


def proposal_info(store: LessonStore, x: Lesson) -> ProposalInfo:
    record = store.reflection(x.reflection_id) or {}
    return ProposalInfo(x.id, x.scope, x.text, x.status, x.note, record.get("prompt", ""), record.get("model", ""),
                        record.get("created_at", ""))


def list_proposals(store: LessonStore, scope: str | None = None, limit: int = 50) -> list[ProposalInfo]:
    """Proposals, newest first: those waiting for the gate and those it decided."""
    found = [x for x in store.lessons((scope or "").strip() or None)
             if x.reflection_id.startswith(PROPOSAL_PREFIX) or x.status == "proposed"]
    return [proposal_info(store, x) for x in reversed(found[-max(1, limit):])]


# ---------------------------------------------------------------- the server, with the official SDK

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

T = TypeVar("T")


def build_server(store_path: Path) -> "MCPServer":
    """The MCP server over the store at `store_path`. ImportError when the `mcp` package (2.x) is missing."""
    from typing import Annotated, Literal

    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ToolAnnotations
    from pydantic import Field

    def run(tool: Callable[..., T], *args, **kw) -> T:
        # a store opened per call: the SDK runs each call in a worker thread, and an SQLite connection is one
        # thread's; opening is a millisecond, and a learn run's commits never wait on a client
        try:
            store = open_store(store_path)
        except StoreError as e:
            raise ToolError(str(e)) from e
        try:
            return tool(store, *args, **kw)
        except (ToolProblem, StoreError) as e:
            raise ToolError(str(e)) from e
        finally:
            store.close()

    server = MCPServer("secondnature", instructions=(
        "Lessons that a learning loop kept because they won paired tests, per scope (a task set, or an application's "
        "route). Call `scopes` to see them, `lessons` for a scope's lessons to follow, `feedback` to score a reply "
        "made through `secondnature serve`, and `propose_lesson` to suggest one: it is tested before it is used."),
        log_level="WARNING")  # stdout is the protocol's; the SDK's request log would only fill a client's log file
    reading = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    def tool(annotations: ToolAnnotations, description: str = "") -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register a tool under its function's name, described by its docstring as one paragraph."""
        def add(fn: Callable[..., T]) -> Callable[..., T]:
            server.add_tool(fn, annotations=annotations, description=description or " ".join((fn.__doc__ or "").split()))
            return fn
        return add

    @tool(reading, description=(
        "A scope's lessons, as the policy reads them in its system prompt: numbered, the most measured gain per token "
        "first under `budget`, in a stable order. Follow them as advice for the task at hand. Given only `query`, the "
        "scope whose learned-on tasks it resembles is chosen (when none does: the most relevant lessons of every "
        "scope). Returns the text, the lesson ids in it, the ids dropped for the budget, the head revision and the "
        f"tokens used. Skills (code) and instruction lessons are left out and listed. {TOKENS_NOTE}"))
    def lessons(
            scope: Annotated[str | None, Field(description="the scope (see `scopes`); leave out to route by "
                                                           "`query`")] = None,
            query: Annotated[str | None, Field(description="the request at hand: without a scope it picks the scope "
                                                           "whose learned-on tasks it resembles")] = None,
            budget: Annotated[int, Field(description="most tokens the lessons may take")] = DEFAULT_BUDGET,
    ) -> LessonBlock:
        return run(get_lessons, scope, query, budget)

    @tool(reading)
    def scopes() -> list[ScopeInfo]:
        """The store's scopes: each one's head revision, its lesson count, their estimated tokens, and proposals
        waiting for the gate."""
        return run(list_scopes)

    @tool(ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False))
    def feedback(
            call_id: Annotated[str, Field(description="the `id` of a chat completion `secondnature serve` returned "
                                                      "(also its x-secondnature-call-id header)")] = "",
            conversation: Annotated[str, Field(description="instead of call_id: the conversation id the application "
                                                           "sent with its calls; the verdict covers all of them")] = "",
            thumbs: Annotated[str | None, Field(description="'up' or 'down'")] = None,
            score: Annotated[float | None, Field(description="a score in [0, 1] (instead of thumbs)")] = None,
            comment: Annotated[str, Field(description="what was good or wrong, in words: reflection reads it")] = "",
            demonstration: Annotated[str, Field(description="a better reply, written out")] = "",
            source: Annotated[Literal["person", "app"], Field(description="person: a person's own verdict; app: the "
                                                                          "assistant's or application's")] = "person",
    ) -> Feedback:
        """Record a verdict on a reply made through `secondnature serve`: thumbs or a score in [0, 1], and/or a comment
        or a better reply. The learner turns scored calls into lessons. Returns the feedback as stored."""
        return run(record_feedback, call_id, conversation, thumbs, score, comment, demonstration, source)

    @tool(ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False))
    def propose_lesson(
            scope: Annotated[str, Field(description="the scope the lesson is for (see `scopes`)")],
            text: Annotated[str, Field(description="one piece of advice for the next attempt, in plain words "
                                                   "(4 to 80 words)")],
            why: Annotated[str, Field(description="what you saw that the lesson would fix; kept as its record")] = "",
            ctx: Context | None = None,
    ) -> ProposalInfo:
        """Propose a lesson for a scope. It passes the lesson screen (no instructions about the model's role, no
        secrets, no addresses, the shape of a lesson) or is refused with the reason. An accepted proposal is stored as
        "proposed" and is NOT used yet: it waits for the gate, the next learning step of its scope, which tests it
        against the current lessons on paired validation items. If it wins it joins the lessons under the id returned
        here; if it loses its status becomes "rejected" with the reason. `proposals` shows where it stands."""
        return run(submit_proposal, scope, text, why, client_name(ctx))

    @tool(reading)
    def proposals(
            scope: Annotated[str | None, Field(description="one scope, or leave out for all")] = None,
            limit: Annotated[int, Field(description="most proposals to list, newest first")] = 50,
    ) -> list[ProposalInfo]:
        """Proposed lessons, newest first, with their status: proposed (waits for the gate), active (won, in use),
        rejected (lost; the note has the gate's reason) or retired (won, later removed)."""
        return run(list_proposals, scope, limit)

    return server


def client_name(ctx: object) -> str:
    """The name and version the client gave when it connected (a stateless HTTP request may give none)."""
    params = getattr(getattr(ctx, "session", None), "client_params", None)
    info = getattr(params, "client_info", None)
    return f"mcp client {info.name} {info.version}".strip() if info else "mcp client"


def serve(store_path: Path, http: tuple[str, int] | None = None) -> None:
    """Run the server: over stdio (a client starts it), or over streamable HTTP at http://HOST:PORT/mcp."""
    server = build_server(store_path)
    if http is None:
        server.run("stdio")
    else:
        server.run("streamable-http", host=http[0], port=http[1])
