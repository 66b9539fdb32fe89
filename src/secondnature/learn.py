"""The lesson loop: rollouts -> reflection -> gate -> new revision, until the rollout budget is spent.

Each step takes a few training tasks, samples K attempts at each with the current lessons in the
system prompt, shows the groups to the reflector, turns every proposed edit into its own candidate
revision (a weak reflector proposes a few good lessons among harmful ones, so each is judged on
its own), and gates the candidates on a fixed validation sample that reflection never sees. The
best candidate that passes becomes the new head. Progress is committed with each step, and every
model call is cached, so a killed run resumes where it stopped without losing an accepted lesson.
"""
from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from . import gate, inject, reflect, rollout
from .candidates import (
    ablations,
    demo_lesson,
    demo_prompt,
    demo_task,
    parse_guide,
    parse_instruction,
    step_prompts,
    tool_demo_lesson,
    tool_demo_prompt,
    worked_example,
)
from .models import CachedModel, Model, ModelError
from .store import LessonStore
from .tasks import split
from .types import Edit, Lesson, Revision, Rollout, Task, TaskSet


@dataclass(frozen=True)
class LearnConfig:
    budget: int = 400            # policy rollouts in all, training and validation
    tasks_per_step: int = 4
    group_size: int = 4          # K attempts per task, compared within the group
    val_size: int = 24           # paired validation items per gate
    temperature: float = 0.8     # training samples; validation is greedy so pairs are exact
    max_tokens: int = 384
    proposals: int = 2           # reflector samples per step
    max_candidates: int = 3      # reflector-written candidate revisions gated per step
    examples: bool = True        # also gate a worked example taken from the policy's own best attempt
    demos: bool = True           # and one written by the reflector for a failed task, checked by the reward
    rewrites: bool = True        # and the rules rewritten whole as one paragraph (a GEPA-style candidate)
    # and the task instruction rewritten, or less one sentence (GEPA's own kind). Off by default: on object_counting
    # and gsm8k none was accepted, and they doubled the training compute (BENCHMARKS.md); `--instructions` turns them on
    instructions: bool = False
    gate_alpha: float = 0.2
    reject_margin: int = 3
    screen: int = 6              # val items the current revision fails, scored first: no win there, no full gate
    confirm: bool = True         # a gate's winner must also win on a second, disjoint validation sample
    lesson_tokens: int | None = 400
    reflect_max_tokens: int = 400
    reflect_context: int = 8192  # the reflector's window (tokens): prompt and reply must fit in it
    seed: int = 0
    split_seed: int = 0


@dataclass(frozen=True)
class LearnResult:
    revision: Revision | None
    run_id: int
    steps: int
    rollouts_used: int
    train_rollouts: int
    val_rollouts: int
    accepted: int
    rejected: int
    reflections: int
    val_score: float
    reflector_tokens: int = 0  # prompt + completion tokens of every reflector call
    history: tuple[dict, ...] = field(default=())


Progress = Callable[[int, str], None]  # (rollouts just spent, message)


def _noop(_: int, __: str) -> None:
    pass


def apply(current: list[Lesson], edit: Edit, new_id: str, scope: str) -> list[Lesson] | None:
    """The lesson list after one edit; edited and added lessons go last, where their new id puts them."""
    if edit.op == "add":
        if any(x.text.strip().lower() == edit.text.lower() for x in current):
            return None
        return current + [Lesson(new_id, edit.text, scope)]
    if edit.op in ("rewrite", "instruct"):
        # a rewrite: the rules give way to one paragraph, worked examples and the instruction stay;
        # "instruct": the instruction lesson (if any) gives way to a new one, every other lesson stays
        gone = ([x for x in current if inject.is_instruction(x)] if edit.op == "instruct" else
                [x for x in current if not x.text.startswith(reflect.EXAMPLE_PREFIX) and not inject.is_instruction(x)])
        if any(x.text.strip().lower() == edit.text.lower() for x in current):
            return None
        return [x for x in current if x not in gone] + [Lesson(new_id, edit.text, scope,
                                                               parent=gone[-1].id if gone else "")]
    rest = [x for x in current if x.id != edit.id]
    if len(rest) == len(current):
        return None
    if edit.op == "delete":
        return rest
    return rest + [Lesson(new_id, edit.text, scope, parent=edit.id)]


def scope_tags(scope: str) -> tuple[str, ...]:
    """Words of a task set's name ("bbh/object_counting" -> bbh, object, counting): a lesson's default tags."""
    return tuple(dict.fromkeys(w for w in re.split(r"[^a-z0-9]+", scope.lower()) if w))


def learn_split(taskset: TaskSet, config: LearnConfig) -> tuple[list[Task], list[Task]]:
    """The shuffled training split and the fixed validation sample a run with this config uses."""
    parts = split(taskset.tasks, config.split_seed)
    train, val = list(parts["train"]), list(parts["val"])
    if not train or not val:
        raise ValueError(f"task set {taskset.name} is too small to split into train and val ({len(taskset.tasks)} tasks)")
    random.Random(config.seed).shuffle(train)
    return train, random.Random(config.seed + 1).sample(val, min(config.val_size, len(val)))


def step_batch(train: list[Task], config: LearnConfig, step: int) -> tuple[list[Task], int]:
    """The training tasks and the sampling seed of step `step`: the shuffled train split, cycled through."""
    start = (step * config.tasks_per_step) % len(train)
    return (train + train)[start:start + config.tasks_per_step], config.seed * 100_003 + step * 101


def confirm_split(taskset: TaskSet, config: LearnConfig) -> list[Task]:
    """The confirmation sample: validation items outside the gate's sample, up to as many again."""
    gate_ids = {t.id for t in learn_split(taskset, config)[1]}
    rest = [t for t in split(taskset.tasks, config.split_seed)["val"] if t.id not in gate_ids]
    return random.Random(config.seed + 2).sample(rest, min(config.val_size, len(rest)))


def learn(policy: Model, reflector: Model, taskset: TaskSet, store: LessonStore, config: LearnConfig = LearnConfig(),
          *, resume: bool = False, progress: Progress = _noop) -> LearnResult:
    scope = taskset.name
    policy = CachedModel(policy, store) if not isinstance(policy, CachedModel) else policy
    reflector = CachedModel(reflector, store) if not isinstance(reflector, CachedModel) else reflector
    run = store.last_run(scope) if resume else None
    if run is not None:
        run_id, step, used = run["id"], run["steps_done"], run["rollouts_used"]
        config = replace(LearnConfig(**{**run["config"], "budget": config.budget}))
        progress(0, f"resuming run {run_id} at step {step}, {used} rollouts spent")
    else:
        run_id, step, used = store.start_run(scope, asdict(config)), 0, 0
    train, val = learn_split(taskset, config)
    store.index_prompts(scope, [(t.id, t.prompt) for t in train])  # so queries like these are routed here
    tags = scope_tags(scope)
    tasks_by_id = {t.id: t for t in taskset.tasks}
    count = policy.count_tokens
    stats = {"train": 0, "val": 0, "accepted": 0, "rejected": 0, "reflections": 0, "reflector_tokens": 0}
    history: list[dict] = []

    def evaluate(lessons: list[Lesson], tasks: list[Task], on_item=None) -> list[Rollout]:
        system, kept = inject.system_prompt(taskset.instruction, lessons, config.lesson_tokens, count)
        rs = rollout.run(policy, tasks, taskset.reward, system, kept, n=1, temperature=0.0,
                         max_tokens=config.max_tokens, seed=config.seed, purpose="val", on_done=on_item, tools=taskset.tools)
        store.add_rollouts(rs, run_id=run_id, scope=scope)
        return rs

    head = store.head(scope)
    current = store.revision_lessons(head)
    val_cache: dict[tuple[str, ...], list[float]] = {}

    def val_scores(lessons: list[Lesson]) -> list[float]:
        nonlocal used
        key = tuple(x.text for x in lessons)
        if key not in val_cache:
            rs = evaluate(lessons, val, on_item=lambda r: progress(1, ""))
            used += len(rs)
            stats["val"] += len(rs)
            val_cache[key] = [r.score.value for r in rs]
        return val_cache[key]

    def val_rollout(system: str, kept: list[Lesson], task: Task) -> float:
        """One greedy validation rollout, recorded and counted against the budget."""
        nonlocal used
        r = rollout.run(policy, [task], taskset.reward, system, kept, n=1, temperature=0.0,
                        max_tokens=config.max_tokens, seed=config.seed, purpose="val", tools=taskset.tools)[0]
        store.add_rollouts([r], run_id=run_id, scope=scope)
        used += 1
        stats["val"] += 1
        progress(1, "")
        return r.score.value

    confirm = confirm_split(taskset, config) if config.confirm else []
    confirm_cache: dict[tuple[str, ...], list[float]] = {}

    def confirm_scores(lessons: list[Lesson], upto: int) -> list[float]:
        """Greedy scores on the confirmation items 0..upto-1, each paid once per lesson set."""
        got = confirm_cache.setdefault(tuple(x.text for x in lessons), [])
        if len(got) < upto:
            system, kept = inject.system_prompt(taskset.instruction, lessons, config.lesson_tokens, count)
            got += [val_rollout(system, kept, task) for task in confirm[len(got):upto]]
        return got[:upto]

    def propose(kind: str, msgs: list[dict], check: Callable[[str], tuple[str, str]], make: Callable[[str], Edit],
                seed: int, evidence: list[str]) -> tuple[Edit | None, str]:
        """One reflector call for a candidate of its own kind, checked, and recorded like any reflection:
        (the edit `make` builds from the checked text, or None; the reflection id)."""
        rid = f"f{run_id}-{step}-{kind}"
        c = reflector.chat(msgs, n=1, temperature=0.7, max_tokens=config.reflect_max_tokens, seed=seed)[0]
        stats["reflections"] += 1
        stats["reflector_tokens"] += c.prompt_tokens + c.completion_tokens
        text, why = check(c.text) if not c.error else ("", f"reflector failed: {c.error}")
        edit = make(text) if text else None
        store.add_reflection(rid, run_id=run_id, scope=scope, model=reflector.name, rollout_ids=evidence,
                             prompt=msgs[-1]["content"], raw=c.text, edits=[asdict(edit)] if edit else [],
                             parse_error=why)
        return edit, rid

    tried: set[tuple[str, ...]] = set()  # lesson sets rejected on every gate item or on confirmation
    base_val = val_scores(current)
    history.append({"step": step, "rollouts": used, "val": sum(base_val) / len(base_val), "lessons": len(current)})
    per_step = config.tasks_per_step * config.group_size

    def to_confirm() -> int:
        """Rollouts confirming a candidate costs from here: its own and, if not yet paid, the current revision's."""
        return 2 * len(confirm) - len(confirm_cache.get(tuple(x.text for x in current), []))

    def to_accept() -> int:
        """Rollouts a candidate needs to be accepted from here: its gate and its confirmation."""
        return len(val) + to_confirm()

    # a step starts only if one of its candidates could still be gated, confirmed and accepted
    while used + per_step + to_accept() <= config.budget:
        # 1. rollouts: K attempts at each of a few training tasks, cycling through the shuffled train split
        batch, seed = step_batch(train, config, step)
        system, kept = inject.system_prompt(taskset.instruction, current, config.lesson_tokens, count)
        rs = rollout.run(policy, batch, taskset.reward, system, kept, n=config.group_size,
                         temperature=config.temperature, max_tokens=config.max_tokens, seed=seed,
                         on_done=lambda r: progress(1, ""), tools=taskset.tools)
        store.add_rollouts(rs, run_id=run_id, scope=scope)
        used += len(rs)
        stats["train"] += len(rs)
        if all(r.error for r in rs):
            raise ModelError(f"the policy failed on every rollout of step {step}: {rs[0].error}")
        train_score = sum(r.score.value for r in rs) / len(rs)
        for lesson in kept:
            store.credit(lesson.id, uses=len(rs))

        # 2. reflect: groups with mixed rewards first; each proposed edit becomes its own candidate
        groups = reflect.order_groups(rs)[:config.tasks_per_step]
        candidates: list[tuple[Edit, list[Lesson], str, list[str]]] = []
        if groups:
            # the reflector's window holds the prompt and its reply: groups that would overflow it are left out
            instruction, others = inject.in_force(taskset.instruction, current)  # a rewritten instruction in force
            kept_groups, msgs, rewrite_msgs, instruct_msgs = step_prompts(
                instruction, others, groups, tasks_by_id, rs, taskset.tools, config.max_tokens,
                reflector.count_tokens, config.reflect_context - config.reflect_max_tokens)
            groups = groups[:kept_groups]
            evidence = [r.id for g in groups for r in g]
            shown = [tasks_by_id[g[0].task_id] for g in groups]
            new_id = store.next_lesson_id()

            def offer(edit: Edit | None, rid: str) -> None:
                lessons = apply(current, edit, new_id, scope) if edit else None
                if lessons is not None and all(lessons != cand[1] for cand in candidates):
                    candidates.append((edit, lessons, rid, evidence))

            for i, c in enumerate(reflector.chat(msgs, n=config.proposals, temperature=0.7,
                                                 max_tokens=config.reflect_max_tokens, seed=seed)):
                stats["reflections"] += 1
                stats["reflector_tokens"] += c.prompt_tokens + c.completion_tokens
                rid = f"f{run_id}-{step}-{i}"
                edits, notes = (reflect.parse(c.text, {x.id for x in others}, shown) if not c.error
                                else ([], [f"reflector failed: {c.error}"]))
                store.add_reflection(rid, run_id=run_id, scope=scope, model=reflector.name, rollout_ids=evidence,
                                     prompt=msgs[-1]["content"], raw=c.text, edits=[asdict(e) for e in edits],
                                     parse_error="; ".join(notes))
                for e in edits:
                    offer(e, rid)
            del candidates[config.max_candidates:]  # the reflector's edits; the other kinds come after
            # the rewrite and instruct prompts open like the reflection's, so they are asked next (a local reflector
            # reads that shared opening once); the demo's prompt is its own. Candidates are offered in a fixed order.
            batch_ids = [r.id for r in rs]
            rewrite = (propose("rewrite", rewrite_msgs, lambda raw: parse_guide(raw, shown),
                               lambda t: Edit("rewrite", t), seed + 1, batch_ids) if config.rewrites else (None, ""))
            instruct = (propose("instruct", instruct_msgs, lambda raw: parse_instruction(raw, instruction, shown),
                                lambda t: Edit("instruct", t), seed + 2, batch_ids) if config.instructions else (None, ""))
            has_example = next((x for x in current if x.text.startswith(reflect.EXAMPLE_PREFIX)), None)
            example = worked_example(groups, tasks_by_id) if config.examples and not has_example else ""
            offer(Edit("add", example) if example else None, "")
            task = demo_task(groups, tasks_by_id) if config.demos else None
            if task is not None:  # with the Python tool, a demonstration is a program, run and checked
                coded = "python" in taskset.tools
                offer(*propose("demo", (tool_demo_prompt if coded else demo_prompt)(instruction, task),
                               lambda raw: (tool_demo_lesson if coded else demo_lesson)(raw, task, taskset.reward),
                               lambda t: Edit("edit", t, has_example.id) if has_example else Edit("add", t), seed, []))
            offer(*rewrite)
            offer(*instruct)
            if config.instructions:
                # all at the first step, then one a step in turn: a 6-item screen is weak evidence, so each
                # comes back on other items, without paying for every one at every step
                cut = ablations(instruction)
                for text in cut if step == 0 else cut[step % max(1, len(cut)):][:1]:
                    offer(Edit("instruct", text), "")
        progress(0, f"step {step}: train {train_score:.2f}, {len(candidates)} candidate(s)")

        # 3. gate each candidate against the current revision on the same validation items and seeds
        base_val = val_scores(current)
        screen = gate.screenable(base_val, config.screen)
        passed: list[tuple] = []  # (result, lessons, reflection id, evidence, edit, gate record, val scores by item)
        for k, (e, lessons, rid, evidence) in enumerate(candidates):
            if inject.select(lessons, config.lesson_tokens, count) == inject.select(current, config.lesson_tokens, count):
                continue  # the edit does not survive the token budget: nothing to test
            if tuple(x.text for x in lessons) in tried:
                continue  # rejected against this revision on the very items its gate would use again
            if used + to_accept() > config.budget:
                break  # a gate or confirmation that cannot see every item would decide on less evidence than promised
            system, kept = inject.system_prompt(taskset.instruction, lessons, config.lesson_tokens, count)
            # items the current revision fails first (the screen), in an order of this candidate's own
            order = gate.screen_order(base_val, seed=seed + k)
            scores: dict[int, float] = {}

            def score_item(i: int) -> float:
                scores[order[i]] = val_rollout(system, kept, val[order[i]])
                return scores[order[i]]

            result = gate.sequential_gate([base_val[i] for i in order], score_item, config.gate_alpha,
                                          config.reject_margin, screen)
            record = {"run_id": run_id, "scope": scope, "current_revision": head.id if head else None,
                      "proposed": [{"op": e.op, "id": e.id, "text": e.text}], "reflection_id": rid, "n": result.n,
                      "current_score": result.current_score, "proposed_score": result.proposed_score,
                      "wins": result.wins, "losses": result.losses, "p_value": result.p_value}
            if result.accepted:
                passed.append((result, lessons, rid, evidence, e, record, scores))
            else:
                store.add_gate({**record, "decision": "rejected", "reason": result.reason})
                stats["rejected"] += 1
                if result.n == len(val):  # a screen's draw changes each step; the whole sample does not
                    tried.add(tuple(x.text for x in lessons))
            progress(0, f"  {e.op} {e.text[:70]!r}: {'passes' if result.accepted else 'rejected'} ({result.reason})")

        # 3b. the best of the candidates that passed must hold on fresh items (confirmation sample), else the next
        best: tuple | None = None  # (result, lessons, reflection id, evidence, edit, gate record, val scores, gain)
        for cand in sorted(passed, key=lambda c: -c[0].proposed_score):
            result, lessons, record = cand[0], cand[1], cand[5]
            if best is not None:
                reason = "a better candidate passed too"
            elif not confirm:
                best = (*cand, result.proposed_score - result.current_score)
                continue
            elif used + to_confirm() > config.budget:
                reason = f"passed ({result.reason}) but no budget was left to confirm it"
            else:
                held = gate.confirm_gate(confirm_scores(current, len(confirm)),
                                         lambda i, ls=lessons: confirm_scores(ls, i + 1)[i], result, config.gate_alpha)
                progress(0, f"  confirmation: {held.reason}")
                if held.accepted:  # the gain stored is the confirmation sample's: it played no part in the choice
                    best = (*cand[:5], {**record, "reason": f"{result.reason}; {held.reason}"}, cand[6],
                            held.proposed_score - held.current_score)
                    continue
                reason = f"passed ({result.reason}) but {held.reason}"
                tried.add(tuple(x.text for x in lessons))
            store.add_gate({**record, "decision": "rejected", "reason": reason})
            stats["rejected"] += 1

        # 4. commit: new lessons, revision, gate record and run progress in one transaction
        step += 1
        if best is not None:
            result, lessons, rid, evidence, e, record, scores, gain = best
            with store.transaction():
                final: list[Lesson] = []
                for x in lessons:
                    if x.id not in {c.id for c in current}:
                        x = store.add_lesson(replace(x, evidence=tuple(evidence), reflection_id=rid, tags=tags,
                                                     gain=gain))
                    final.append(x)
                head = store.commit_revision(scope, [x.id for x in final], f"{e.op}: {result.reason}",
                                             gate={"reason": result.reason, **record},
                                             run_progress=(run_id, step, used))
            current = final
            val_cache[tuple(x.text for x in current)] = [scores[i] for i in range(len(val))]  # a winner saw every item
            stats["accepted"] += 1
            progress(0, f"accepted revision {head.id}: val {result.current_score:.2f} -> {result.proposed_score:.2f}")
        else:
            store.update_run(run_id, step, used)
        v = val_scores(current)
        history.append({"step": step, "rollouts": used, "val": sum(v) / len(v), "lessons": len(current)})
    store.update_run(run_id, step, used, status="done")
    v = val_scores(current)
    return LearnResult(head, run_id, step, used, stats["train"], stats["val"], stats["accepted"], stats["rejected"],
                       stats["reflections"], sum(v) / len(v), stats["reflector_tokens"], tuple(history))
