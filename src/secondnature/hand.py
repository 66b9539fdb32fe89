"""Changes a person makes to a store: edit, retire and restore a lesson, restore, promote or roll back a revision,
import lessons. The command line, the web page and the MCP server all call these, so a change made anywhere is the
same change: a new revision of the scope (nothing is lost), made on the head as it is once the store's write lock is
held, and every text through the lesson screen first.

A person is trusted (no gate) but not with a text that attacks the policy: the safety screen has no override."""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .screen import attack_in, problem_with
from .store import LessonStore
from .types import Lesson, Revision


class HandError(ValueError):
    """A change that cannot be made, with what to do instead. Nothing was changed."""


@dataclass(frozen=True)
class Change:
    """What a hand change did, in words a person reads: the new revision and a sentence."""

    revision: Revision
    message: str
    lesson: Lesson | None = None  # the new lesson an edit made


def change_head(store: LessonStore, scope: str, change: Callable[[list[str]], list[str]], note: str) -> Revision:
    """Commit `change` (the head's lesson ids -> the new ones) applied to the head of `scope` as it is when the write
    lock is held: whatever another process committed before is what the change is applied to, and nothing can commit
    between the read and the commit (`parent` makes the store check it)."""
    with store.transaction():
        head = store.head(scope)
        ids = change(list(head.lesson_ids) if head else [])
        return store.commit_revision(scope, ids, note, parent=head.id if head else None)


def lesson_of(store: LessonStore, lesson_id: str) -> Lesson:
    lesson = store.lesson(lesson_id)
    if lesson is None:
        raise HandError(f"no lesson {lesson_id!r}; see `secondnature lessons list --all`")
    return lesson


def tidy(old: str, text: str) -> str:
    """One line, except where lines carry meaning: an instruction's answer line, a worked example's steps, code."""
    if "```" in old or "```" in text:
        return text.strip()
    if "\n" in old:
        return "\n".join(" ".join(line.split()) for line in text.strip().splitlines() if line.strip())
    return " ".join(text.split())


def edit(store: LessonStore, lesson_id: str, text: str, *, force: bool = False,
         allow_instruction: bool = False) -> Change | None:
    """Replace a lesson's text with a new lesson (its `parent` the old one) in a new revision; None if unchanged."""
    x = lesson_of(store, lesson_id)
    text = tidy(x.text, text)
    if not text or text == x.text:
        return None
    if why := attack_in(text, allow_instruction=allow_instruction):  # force does not pass the safety screen
        raise HandError(f"the lesson screen refuses that text ({why}); nothing was changed")
    why = problem_with(text, allow_instruction=allow_instruction)
    if why and not force:
        raise HandError(f"that text does not look like a lesson ({why}); pass --force to keep it anyway")
    return _replace(store, x, text)


def remove(store: LessonStore, lesson_id: str) -> Change:
    """Retire a lesson: a new revision without it (the lesson stays in the store, restorable)."""
    return _replace(store, lesson_of(store, lesson_id), None)


def _replace(store: LessonStore, x: Lesson, text: str | None) -> Change:
    new: list[Lesson] = []

    def swap(ids: list[str]) -> list[str]:
        if x.id not in ids:
            raise HandError(f"{x.id} is not in the current revision of {x.scope}; restore a revision that has it "
                            f"first")
        if text is not None:
            new.append(store.add_lesson(Lesson("", text, x.scope, x.evidence, x.reflection_id, parent=x.id,
                                               gain=x.gain, tags=x.tags)))
        store.set_status(x.id, "retired", "edited by hand" if text else "removed by hand")
        return [i for i in ids if i != x.id] + [y.id for y in new]
    rev = change_head(store, x.scope, swap, f"{'edited' if text else 'removed'} {x.id} by hand")
    done = f"replaced {x.id} with {new[0].id}" if new else f"removed {x.id}"
    return Change(rev, f"revision {rev.id} of {x.scope}: {done}", new[0] if new else None)


def restore_lesson(store: LessonStore, lesson_id: str) -> Change:
    x = lesson_of(store, lesson_id)

    def restore(ids: list[str]) -> list[str]:
        if x.id in ids:
            raise HandError(f"{x.id} is already in the current revision of {x.scope}")
        return ids + [x.id]
    rev = change_head(store, x.scope, restore, f"restored {x.id} by hand")
    was = f" (it was retired: {x.note})" if x.note else ""
    return Change(rev, f"revision {rev.id} of {x.scope}: restored {x.id}{was}")


def revision_of(store: LessonStore, rev_id: int | None) -> Revision:
    rev = store.revision(rev_id) if rev_id is not None else None
    if rev is None:
        raise HandError(f"no revision {rev_id}; see `secondnature revisions list`")
    return rev


def restore_revision(store: LessonStore, rev_id: int) -> Change:
    old = revision_of(store, rev_id)
    rev = change_head(store, old.scope, lambda _ids: list(old.lesson_ids), f"restored revision {old.id}")
    return Change(rev, f"revision {rev.id} of {old.scope} restores revision {old.id} ({len(old.lesson_ids)} lessons)")


def promote(store: LessonStore, rev_id: int) -> Change:
    """Revision N's lessons become its scope's head (live at once in `serve`), as a new revision."""
    target = revision_of(store, rev_id)
    note = f"promoted revision {target.id}"
    rev = change_head(store, target.scope, lambda _ids: list(target.lesson_ids), note)
    return Change(rev, f"revision {rev.id} of {target.scope}: {note} ({len(target.lesson_ids)} lessons), live now")


def rollback(store: LessonStore, scope: str) -> Change:
    """The head's parent's lessons become the head again, as a new revision (so it can itself be rolled back)."""
    head = store.head(scope)
    if head is None or head.parent is None:
        raise HandError(f"{scope!r} has no earlier revision to roll back to")
    target = revision_of(store, head.parent)
    note = f"rolled back revision {head.id} to {head.parent}"
    rev = change_head(store, scope, lambda _ids: list(target.lesson_ids), note)
    return Change(rev, f"revision {rev.id} of {scope}: {note} ({len(target.lesson_ids)} lessons), live now")


def diff(store: LessonStore, a: int, b: int) -> list[str]:
    """A unified diff of two revisions' lessons, one lesson a line."""
    ra, rb = revision_of(store, a), revision_of(store, b)
    la = [f"{x.id}. {x.text}" for x in store.revision_lessons(ra)]
    lb = [f"{x.id}. {x.text}" for x in store.revision_lessons(rb)]
    return list(difflib.unified_diff(la, lb, f"revision {ra.id}", f"revision {rb.id}", lineterm=""))


@dataclass(frozen=True)
class Imported:
    scope: str
    revision: Revision
    refused: tuple[tuple[str, str], ...]  # (text, why) the safety screen refused


def import_lessons(store: LessonStore, scopes: Mapping[str, Sequence[Mapping]], source: str, *,
                   prompts: Mapping[str, Sequence[Sequence[str]]] | None = None,
                   allow_instruction: bool = False) -> list[Imported]:
    """Every scope's lessons (dicts with "text", and maybe "evidence", "gain", "tags") added to its head, each through
    the safety screen first (a file may come from anyone), every scope or none. A text the head holds already is not
    added twice."""
    done = []
    with store.transaction():
        for scope, items in scopes.items():
            if not all(isinstance(item, Mapping) and str(item.get("text", "")).strip() for item in items):
                raise HandError(f"{source}: scope {scope}: every lesson needs a non-empty \"text\"")
            refused = tuple((item["text"], why) for item in items
                            if (why := attack_in(item["text"], allow_instruction=allow_instruction)))
            gone = {t for t, _ in refused}
            keep = [item for item in items if item["text"] not in gone]

            def add(ids: list[str], scope: str = scope, keep: list = keep) -> list[str]:
                have = {x.text for x in store.revision_lessons(store.head(scope))}
                return ids + [store.add_lesson(Lesson("", item["text"], scope, tuple(item.get("evidence", ())),
                                                      gain=float(item.get("gain", 0.0)),
                                                      tags=tuple(item.get("tags", ())))).id
                              for item in keep if item["text"] not in have]
            rev = change_head(store, scope, add, f"imported from {source}")
            pairs = (prompts or {}).get(scope, [])
            if not isinstance(pairs, list) or not all(isinstance(x, list | tuple) and len(x) == 2 for x in pairs):
                raise HandError(f"{source}: prompts of scope {scope} must be a list of (task id, prompt) pairs, as "
                                f"`secondnature lessons export` writes them; nothing was imported")
            store.index_prompts(scope, [(str(t), str(p)) for t, p in pairs])
            done.append(Imported(scope, rev, refused))
    return done
