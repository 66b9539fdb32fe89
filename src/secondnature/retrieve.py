"""Which lessons one query gets when a store holds lessons for many task sets.

Scope first: a query is routed to the task set whose learned-on prompts it resembles (BM25 over
SQLite FTS5, then a word-overlap floor so a query that merely shares "how many" with a task set is
not routed there), and gets that scope's head lessons as a stable block, ordered by id so a
provider's prefix cache keeps hitting. A query that matches no scope gets lessons by relevance
(BM25 over lesson text and tags, at least two content words shared); a routed query may, if asked,
get a few relevant lessons of other scopes after its stable block. By default a lesson of one task
set reaches another only through the no-match fallback.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

from . import inject
from .store import LessonStore
from .text import words as text_words
from .types import Lesson

ROUTE_MIN_OVERLAP = 0.3   # Jaccard of word sets between the query and a matched prompt
ROUTE_HITS = 10           # nearest learned-on prompts that vote for a scope
FALLBACK_MIN_SHARED = 2   # content words a lesson must share with a query that matched no scope
STOPWORDS = frozenset("""a an and are as at be by do does for from has have how i if in is it its many much of on or
so that the their them then there these they this to was what when where which who why will with you your""".split())


@dataclass(frozen=True)
class Injected:
    scope: str | None                 # the scope the query was routed to (None: none matched)
    stable: tuple[Lesson, ...]        # that scope's head lessons that fit the budget, by id
    retrieved: tuple[Lesson, ...]     # lessons found by relevance, after the stable block

    @property
    def lessons(self) -> tuple[Lesson, ...]:
        return self.stable + self.retrieved


def words(text: str) -> set[str]:
    return set(text_words(text))


def route(store: LessonStore, query: str, min_overlap: float = ROUTE_MIN_OVERLAP) -> str | None:
    """The scope whose learned-on prompts the query resembles most, or None if none is close enough."""
    q = words(query)
    for rare in (True, False):  # the rarest words first (fast, and usually decisive), then all of them
        votes: Counter[str] = Counter()
        for scope, prompt, rank in store.match_prompts(query, ROUTE_HITS, rare=rare):
            p = words(prompt)
            if q and len(q & p) / len(q | p) >= min_overlap:
                votes[scope] += -rank  # FTS5's rank is minus BM25: larger votes for closer prompts
        if votes:
            return votes.most_common(1)[0][0]
    return None


def relevant(store: LessonStore, query: str, candidates: dict[str, Lesson], k: int) -> list[Lesson]:
    """Up to k candidate lessons by BM25 against the query, each sharing enough content words with it."""
    q = words(query) - STOPWORDS
    found = []
    for lid, _ in store.match_lessons(query, 4 * k):
        x = candidates.get(lid)
        if x is not None and len(q & (words(x.text) | words(" ".join(x.tags)))) >= FALLBACK_MIN_SHARED:
            found.append(x)
        if len(found) == k:
            break
    return found


@lru_cache(maxsize=4096)
def stable_block(store: LessonStore, revision_id: int, budget_tokens: int | None,
                 count_tokens: Callable[[str], int]) -> tuple[Lesson, ...]:
    """A revision's lessons that fit the budget, by id. A revision never changes (a new head is a new id), so
    this is computed once per revision and budget: every later query of that scope costs one lookup."""
    return tuple(inject.select(store.revision_lessons(store.revision(revision_id)), budget_tokens, count_tokens))


def lessons_for(store: LessonStore, query: str, budget_tokens: int | None, count_tokens: Callable[[str], int], *,
                scope: str | None = None, live: Sequence[Lesson] | None = None, k: int = 5,
                extra: int = 0) -> Injected:
    """The lessons one query gets.

    `scope` skips routing (the caller knows the task set). A query routed to a scope gets that scope's
    head lessons (none, if curation retired them all: nothing helped there) and, with `extra` > 0, up
    to that many relevant lessons of other scopes after them (off by default: they are what leaks
    between task sets). A query routed nowhere gets up to `k` relevant lessons of any scope. `live` is
    `store.live_lessons()`, passed in when many queries share it."""
    scope = scope or route(store, query)
    head = store.head_id(scope) if scope else None
    scope = scope if head else None  # a scope with no revision is no scope: treat the query as unrouted
    stable = list(stable_block(store, head, budget_tokens, count_tokens)) if head else []
    want = extra if head else k
    if not want:
        return Injected(scope, tuple(stable), ())
    # another scope's rewritten instruction would replace this query's own: never borrowed
    pool = {x.id: x for x in (store.live_lessons() if live is None else live)
            if x.scope != scope and not inject.is_instruction(x)}
    found = relevant(store, query, pool, want)
    retrieved = inject.select(found, budget_tokens, count_tokens, reserved=inject.lesson_tokens(stable, count_tokens))
    return Injected(scope, tuple(stable), tuple(retrieved))


def system_prompt(instruction: str, injected: Injected) -> str:
    return inject.render(instruction, injected.lessons)
