"""The lesson loop: rollouts -> reflect -> propose -> gate -> commit, until the budget is spent or nothing is
left to win.

Each step takes a few training tasks and samples K attempts at each with the current lessons in the
system prompt. The proposers (propose.py) turn what the step saw into candidate revisions, each
judged alone: a weak reflector proposes a few good lessons among harmful ones. Every candidate meets
the current revision on the same validation items and seed (validate.py, gate.py); the best that
passes must then hold on a second, disjoint sample that played no part in the choice, and becomes
the new head in one transaction with its evidence and gate record. Every model call is cached and
every step committed, so a killed run resumes where it stopped without losing an accepted lesson.

Lessons proposed from outside (an agent through `secondnature mcp`) wait in the store, in no revision,
until a step gates them like any candidate: the winner joins the head under the id its author was
given, and one that loses is marked rejected with the gate's reason, so it is not gated again.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace

from . import inject, rollout
from .evidence import fit_groups, order_groups
from .gate import GateResult, record
from .models import Model, ModelError, cached, window_of
from .propose import PROPOSAL, PROPOSERS, Proposal, Proposer, Step, propose
from .screen import problem_with
from .store import LessonStore, open_store
from .tasks import split
from .text import words
from .traffic import observed
from .types import Candidate, GateRecord, Lesson, Revision, Rollout, Task, TaskSet
from .validate import RETRIES, Progress, Validation, key, no_progress


@dataclass(frozen=True)
class LearnConfig:
    budget: int = 400            # policy rollouts in all, training and validation
    tasks_per_step: int = 4
    group_size: int = 4          # K attempts per task, compared within the group
    val_size: int = 24           # paired validation items per gate
    temperature: float = 0.8     # training samples; validation is greedy so pairs are exact
    max_tokens: int = 384
    proposals: int = 2           # reflector samples asking for edits, per step
    max_candidates: int = 3      # edit candidates gated per step (the other proposers add theirs)
    gate_alpha: float = 0.2
    reject_margin: int = 3
    screen: int = 6              # val items the current revision fails, scored first: no win there, no full gate
    confirm: bool = True         # a gate's winner must also win on a second, disjoint validation sample
    lesson_tokens: int | None = 400
    reflect_max_tokens: int = 400
    reflect_context: int = 8192  # the reflector's window (tokens): prompt and reply must fit in it
    seed: int = 0
    split_seed: int = 0
    instruction_lessons: bool = False  # let a lesson replace the task's instruction (the screen refuses those by default)
    traffic: bool = False        # a run over an application's recorded traffic (serve's learner counts its spend)
    skill_samples: int = 8       # drafts of a skill search in each of a run's first steps (0: no skills)


@dataclass(frozen=True)
class LearnResult:
    revision: Revision | None          # the head revision at the end
    lessons: tuple[Lesson, ...]        # its lessons: what to inject (inject.system_prompt)
    gates: tuple[GateRecord, ...]      # every gate decision of this run, accepted or not
    run_id: int
    steps: int
    rollouts_used: int                 # policy rollouts, training and validation, since the run began
    train_rollouts: int
    val_rollouts: int
    accepted: int
    rejected: int
    reflections: int
    val_score: float                   # the head's validation accuracy
    reflector_tokens: int = 0          # prompt + completion tokens of every reflector call
    history: tuple[dict, ...] = field(default=())  # the head's validation accuracy after each step
    stopped: str = ""                  # why the run ended


def learn(policy: Model, reflector: Model, taskset: TaskSet, store: LessonStore | None = None,
          config: LearnConfig = LearnConfig(), *, proposers: Sequence[Proposer] = PROPOSERS, resume: bool = False,
          progress: Progress = no_progress) -> LearnResult:
    """Learn lessons for `taskset` into `store` (the default store if None); `resume` continues its last run."""
    store = store if store is not None else open_store()
    policy, reflector = cached(policy, store), cached(reflector, store)
    scope = taskset.name
    run_id, step, spent, config = _begin(store, scope, config, resume, progress)
    if not resume:
        config = planned(config, progress)
    train, val = learn_split(taskset, config)
    store.index_prompts(scope, [(t.id, t.prompt) for t in train])  # so queries like these are routed here
    v = Validation(policy, taskset, val, store, budget=config.budget, spent=spent, run_id=run_id,
                   confirm=confirm_split(taskset, config) if config.confirm else (),
                   lesson_tokens=config.lesson_tokens, max_tokens=config.max_tokens, seed=config.seed, progress=progress)
    head = store.head(scope)
    current = tuple(store.revision_lessons(head))
    v.scores(current, charge=not resume)  # a resumed run paid for its head's validation before it stopped
    gates: list[GateRecord] = []
    tried: set[tuple[str, ...]] = set()  # lesson sets rejected on every gate item or on confirmation
    counts = {"train": 0, "reflections": 0, "reflector_tokens": 0}
    history = [{"step": step, "rollouts": v.spent, "val": v.mean(current), "lessons": len(current)}]
    while not (stopped := why_stop(v, current, config)):
        # 1. rollouts: K attempts at each of a few training tasks, cycling through the shuffled train split
        batch, seed = step_batch(train, config, step)
        batch = batch[:step_tasks(v, current, config)]  # the budget's last step may be a smaller one
        rs = _attempts(policy, taskset, current, batch, seed, config, store, run_id, progress)
        v.spent += len(rs)
        counts["train"] += len(rs)

        # 2. reflect and propose: the proposers turn the step's evidence into candidate revisions
        # recorded traffic: the reply the application got, scored by its feedback, is shown beside the replays
        seen = observe(run_id, step, seed, taskset, current, [*rs, *observed(batch)], reflector,
                       store.next_lesson_id(), config, train, pending=store.lessons(scope, "proposed"))
        proposal = propose(seen, proposers) if seen.groups else Proposal()
        store.add_rollouts(proposal.rollouts, run_id=run_id, scope=scope)  # a skill's tests: its evidence
        for r in proposal.reflections:
            store.add_reflection(r, run_id=run_id, scope=scope)
        counts["reflections"] += len(proposal.reflections)
        counts["reflector_tokens"] += sum(r.tokens for r in proposal.reflections)
        progress(0, f"step {step}: train {sum(r.score.value for r in rs) / len(rs):.2f}, "
                    f"{len(proposal.candidates)} candidate(s)")

        # 3. gate each candidate against the current revision; the best that passes must hold on fresh items
        where = {"run_id": run_id, "step": step, "current_revision": head.id if head else None}
        best, rejected = choose(v, current, proposal.candidates, config, seed, tried, where, progress)
        for g in rejected:
            store.add_gate(g)
        settle(store, proposal.candidates, rejected)
        gates += rejected

        # 4. commit: new lessons, revision, gate record and run progress in one transaction
        step += 1
        if best is None:
            store.update_run(run_id, step, v.spent)
        else:
            candidate, accepted, gain = best
            head, current = commit(store, candidate, accepted, gain, current, (run_id, step, v.spent))
            gates.append(replace(accepted, revision_id=head.id))
            progress(0, f"accepted revision {head.id}: val {accepted.current_score:.2f} -> {accepted.proposed_score:.2f}")
        history.append({"step": step, "rollouts": v.spent, "val": v.mean(current), "lessons": len(current)})
    store.update_run(run_id, step, v.spent, status="done")
    progress(0, f"stopped: {stopped}")
    n_accepted = sum(g.decision == "accepted" for g in gates)
    return LearnResult(head, current, tuple(gates), run_id, step, v.spent, counts["train"], v.paid, n_accepted,
                       len(gates) - n_accepted, counts["reflections"], v.mean(current), counts["reflector_tokens"],
                       tuple(history), stopped)


def why_stop(v: Validation, current: Sequence[Lesson], config: LearnConfig) -> str:
    """Why no further step is worth starting ('' to go on): nothing is left to win, or the budget cannot pay for
    a step's attempts and the gate and confirmation of one of its candidates."""
    scores = [x for x in v.scores(current) if not math.isnan(x)]  # NaN: a call that failed
    if scores and min(scores) >= 1.0 and len(scores) == len(v.items):
        return f"the current revision scores {len(scores)}/{len(scores)} on validation: nothing is left to win"
    if step_tasks(v, current, config) < MIN_STEP_TASKS:
        attempts, gating = MIN_STEP_TASKS * config.group_size, v.to_accept(current)
        return (f"{v.spent} of {v.budget} rollouts spent; the {v.budget - v.spent} left cannot pay for another step: "
                f"{attempts} attempts at least and up to {gating} to gate and confirm a candidate (raise --budget to "
                f"learn more)")
    return ""


MIN_STEP_TASKS = 2   # a step compares attempts across tasks as well as within a group
MIN_VAL = 12         # the smallest gate sample a plan shrinks to


def step_tasks(v: Validation, current: Sequence[Lesson], config: LearnConfig) -> int:
    """Training tasks the next step can afford: `tasks_per_step`, or fewer at the end of the budget, so the last
    rollouts are spent on a smaller step rather than left over."""
    room = v.budget - v.spent - v.to_accept(current)
    return max(0, min(config.tasks_per_step, room // config.group_size))


def planned(config: LearnConfig, progress: Progress) -> LearnConfig:
    """The run's plan, said to the user: the gate sample shrinks (to MIN_VAL at least) until the budget pays for the
    first validation and two steps whose candidate is gated and confirmed in full, so a small budget still learns."""
    attempts = config.tasks_per_step * config.group_size
    confirm = 2 if config.confirm else 0
    val = config.val_size
    while val > MIN_VAL and val + 2 * (attempts + (1 + confirm) * val) > config.budget:
        val -= 1
    if val != config.val_size:
        progress(0, f"plan: {val} validation items per gate instead of {config.val_size}, so the budget of "
                    f"{config.budget} pays for two full steps")
    worst = attempts + (1 + confirm) * val
    progress(0, f"plan: {val} rollouts to validate the start, then steps of {attempts} attempts and up to {worst - attempts} "
                f"to gate and confirm a candidate (gates stop early when the evidence is clear)")
    return replace(config, val_size=val)


def _attempts(policy: Model, taskset: TaskSet, current: Sequence[Lesson], batch: list[Task], seed: int,
              config: LearnConfig, store: LessonStore, run_id: int, progress: Progress) -> list[Rollout]:
    """The step's training attempts, recorded; the lessons in context are credited with the use."""
    system, kept = inject.compose(taskset.instruction, current, config.lesson_tokens, policy.count_tokens)
    for tries in range(1, 2 + RETRIES):  # an outage of every call: asked again (successes are cached) before giving up
        rs = rollout.run(policy, batch, taskset.reward, system, kept, n=config.group_size,
                         temperature=config.temperature, max_tokens=config.max_tokens, seed=seed,
                         on_done=lambda r: progress(1 if tries == 1 else 0, ""), tools=taskset.tools)
        if not all(r.error for r in rs):
            break
    store.add_rollouts(rs, run_id=run_id, scope=taskset.name)
    if all(r.error for r in rs):
        raise ModelError(f"the policy failed on every rollout of this step, {1 + RETRIES} times: {rs[0].error}; "
                         f"check the endpoint, then continue with --resume")
    for lesson in kept:
        store.credit(lesson.id, uses=len(rs))
    return rs


def observe(run_id: int, index: int, seed: int, taskset: TaskSet, current: Sequence[Lesson], rs: Sequence[Rollout],
            reflector: Model, new_id: str, config: LearnConfig, train: Sequence[Task] = (), *,
            pending: Sequence[Lesson] = ()) -> Step:
    """What the proposers see of a step: groups with mixed rewards first, as many as fit the reflector's window
    with its reply, and the scope's proposals waiting for a gate."""
    instruction, _ = inject.in_force(taskset.instruction, current)  # a rewritten instruction in force, if any
    rs = [r for r in rs if not r.error]  # a failed call says nothing about the task: nothing to learn from it
    step = Step(run_id, index, seed, taskset, instruction, tuple(current), (), tuple(rs),
                {t.id: t for t in taskset.tasks}, reflector, new_id, config.proposals, config.max_candidates,
                config.reflect_max_tokens, config.max_tokens, tuple(train),
                # an application cannot run a skill (serve injects words only): no search over its traffic
                0 if any("messages" in t.metadata for t in taskset.tasks[:1]) else config.skill_samples,
                tuple(pending))
    groups = tuple(tuple(g) for g in order_groups(rs)[:config.tasks_per_step])
    window = min(config.reflect_context, window_of(reflector) or config.reflect_context)
    _, kept = fit_groups(lambda gs: replace(step, groups=tuple(gs)).prompt(), groups, reflector.count_tokens,
                         window - config.reflect_max_tokens)
    return replace(step, groups=groups[:kept])


def choose(v: Validation, current: Sequence[Lesson], candidates: Sequence[Candidate], config: LearnConfig, seed: int,
           tried: set[tuple[str, ...]], where: dict, progress: Progress
           ) -> tuple[tuple[Candidate, GateRecord, float] | None, list[GateRecord]]:
    """Gate every candidate; confirm the best that passed on fresh items (else the next). The winner with its
    gate record and the gain it showed on the confirmation sample, and the records of all the others."""
    count, passed, rejected = v.policy.count_tokens, [], []
    for k, c in enumerate(candidates):
        if why := screened(c, current, config):  # any proposer's, a custom one's too: refused before it costs a rollout
            progress(0, f"  {c.edit.op} {c.edit.text[:70]!r}: refused ({why})")
            rejected.append(record(GateResult(0, 0.0, 0.0, 0, 0, 1.0, False, f"screen: {why}"), v.taskset.name,
                                   [c.edit], candidate=k, reflection_id=c.reflection_id, **where))
            continue
        if inject.select(c.lessons, config.lesson_tokens, count) == inject.select(current, config.lesson_tokens, count):
            continue  # the edit does not survive the token budget: nothing to test
        if key(c.lessons) in tried:
            continue  # rejected against this revision on the very items its gate would use again
        if not v.affords(v.to_accept(current)):  # a gate that cannot see every item would decide on less evidence
            progress(0, f"  {len(candidates) - k} candidate(s) not gated: the {v.budget - v.spent} rollouts left cannot "
                        f"pay for a gate and confirmation ({v.to_accept(current)})")
            break
        result = v.gate(current, c.lessons, order_seed=seed + k, alpha=config.gate_alpha,
                        reject_margin=config.reject_margin, screen=config.screen)
        progress(0, f"  {c.edit.op} {c.edit.text[:70]!r}: {'passes' if result.accepted else 'rejected'} ({result.reason})")
        g = record(result, v.taskset.name, [c.edit], candidate=k, reflection_id=c.reflection_id, **where)
        if result.accepted:
            passed.append((c, result, g))
            continue
        rejected.append(g)
        if result.n == len(v.items):  # a screen's draw changes each step; the whole sample does not
            tried.add(key(c.lessons))
    best = None
    for c, result, g in sorted(passed, key=lambda p: -p[1].proposed_score):
        if best is not None:
            why = BETTER
        elif not v.confirm_items:
            best = (c, g, result.proposed_score - result.current_score)
            continue
        elif not (n := v.confirmable(current)):
            why = f"passed ({result.reason}) but {UNCONFIRMED}"
        else:
            held = v.confirm(current, c.lessons, result, config.gate_alpha, n)
            progress(0, f"  confirmation: {held.reason}")
            if held.accepted:  # the gain stored is the confirmation sample's: it played no part in the choice
                best = (c, replace(g, reason=f"{result.reason}; {held.reason}"), held.proposed_score - held.current_score)
                continue
            why = f"passed ({result.reason}) but {held.reason}"
            tried.add(key(c.lessons))
        rejected.append(replace(g, decision="rejected", reason=why))
    return best, rejected


BETTER = "a better candidate passed too"
UNCONFIRMED = "no budget was left to confirm it"


def settle(store: LessonStore, candidates: Sequence[Candidate], rejected: Sequence[GateRecord]) -> None:
    """A proposal that lost (the screen refused it, its gate rejected it, or it did not hold on the fresh items) is
    rejected, with the reason, so no later step pays to gate it again. One that passed but was not taken (a better
    candidate won, or no budget was left to confirm it) keeps waiting: it may win against the next head."""
    for g in rejected:
        c = candidates[g.candidate] if g.candidate is not None and g.candidate < len(candidates) else None
        if c is not None and c.kind == PROPOSAL and not (g.reason == BETTER or g.reason.endswith(UNCONFIRMED)):
            store.set_status(c.edit.id, "rejected", f"gate: {g.reason}")


def screened(c: Candidate, current: Sequence[Lesson], config: LearnConfig) -> str:
    """Why the screen refuses one of the candidate's new lessons ('' when none)."""
    kept = {x.text for x in current}
    return next((f"{why}: {x.text[:60]!r}" for x in c.lessons if x.text not in kept
                 and (why := problem_with(x.text, allow_instruction=config.instruction_lessons))), "")


def commit(store: LessonStore, c: Candidate, gate: GateRecord, gain: float, current: Sequence[Lesson],
           run_progress: tuple[int, int, int]) -> tuple[Revision, tuple[Lesson, ...]]:
    """The candidate's new lessons (with their evidence, reflection and gain), its revision, gate record and the
    run's progress, in one transaction. If another writer committed to the scope since the run read its head (a hand
    edit, an import, another run), the accepted edit is applied to their revision rather than dropping it; the note
    says the gate judged it on the older one."""
    kept, tags = {x.id for x in current}, scope_tags(gate.scope)

    def stored(x: Lesson) -> Lesson:
        if x.id in kept:
            return x
        if c.kind == PROPOSAL and x.id == c.edit.id:  # joins as the row that was proposed: its author knows its id
            store.credit(x.id, gain=gain)
            return replace(x, gain=gain, status="active", note="")  # what the revision's commit makes of it
        return store.add_lesson(replace(x, evidence=c.evidence, gain=gain, tags=tags, reflection_id=c.reflection_id))

    with store.transaction():
        final = tuple(stored(x) for x in c.lessons)
        head = store.commit_revision(gate.scope, [x.id for x in final], f"{c.edit.op}: {gate.reason}",
                                     parent=gate.current_revision, rebase=True, gate=gate, run_progress=run_progress)
        if list(head.lesson_ids) != [x.id for x in final]:  # rebased: the run goes on from the head as it now is
            final = tuple(store.revision_lessons(head))
    return head, final


def _begin(store: LessonStore, scope: str, config: LearnConfig, resume: bool,
           progress: Progress) -> tuple[int, int, int, LearnConfig]:
    """(run id, step, rollouts spent, config) of a new run, or of the scope's last run resumed with its own config
    and the budget asked for now."""
    run = store.last_run(scope) if resume else None
    if run is None:
        return store.start_run(scope, asdict(config)), 0, 0, config
    known = {f.name for f in fields(LearnConfig)}  # a run of an older version may hold options since removed
    config = LearnConfig(**{**{k: v for k, v in run["config"].items() if k in known}, "budget": config.budget})
    progress(run["rollouts_used"], f"resuming run {run['id']} at step {run['steps_done']}, "
                                   f"{run['rollouts_used']} rollouts spent")
    return run["id"], run["steps_done"], run["rollouts_used"], config


def scope_tags(scope: str) -> tuple[str, ...]:
    """Words of a task set's name ("bbh/object_counting" -> bbh, object, counting): a lesson's default tags."""
    return tuple(dict.fromkeys(words(scope)))


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
