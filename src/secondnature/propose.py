"""Proposers: from one step's evidence to candidate revisions, each judged alone by the gate.

A proposer is a function `(Step) -> Proposal`. The loop runs a tuple of them in order, and a user
can pass their own beside or instead of these:

- `reflector_edits`: the reflector reads the step's groups and proposes lesson edits (add, edit,
  delete); each edit is a candidate of its own, since a weak reflector proposes a few good lessons
  among harmful ones;
- `rule_rewrite`: all the rules rewritten as one paragraph that replaces them, the way GEPA
  proposes whole instructions;
- `worked_example`: the policy's own best work, a correct attempt that shows its working from a
  group where others failed (small models copy a method from an example they would not follow as
  a rule);
- `demonstration`: the reflector writes the solution of one failed task (with the Python tool: the
  program that solves it, run in the sandbox); the reward must accept it first;
- `proposed`: lessons proposed from outside the loop (an agent through `secondnature mcp`), waiting in
  the store; each meets the gate as any candidate does, and the loop records its verdict on it.

A candidate that repeats a kept lesson in nearly the same words is refused here, with the reason:
the prompt would carry the same advice twice.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from . import reflect, skills
from .evidence import render_trajectory
from .inject import EXAMPLE_PREFIX, is_instruction
from .models import Model
from .redact import redact_messages
from .rollout import is_episode
from .screen import MAX_EXAMPLE_WORDS
from .text import DUPLICATE, similarity
from .tools import OUTPUT_HEADER
from .types import Candidate, Edit, Lesson, Reflection, Rollout, Task, TaskSet


@dataclass(frozen=True)
class Step:
    """What one step of the loop has seen, for the proposers."""

    run_id: int
    index: int                               # the step's number in its run
    seed: int                                # its sampling seed; reflector calls derive theirs from it
    taskset: TaskSet
    instruction: str                         # the instruction in force
    lessons: tuple[Lesson, ...]              # the current revision's lessons
    groups: tuple[tuple[Rollout, ...], ...]  # attempts grouped by task, as the reflector is shown them
    batch: tuple[Rollout, ...]               # every attempt of the step, shown or not
    tasks: Mapping[str, Task]
    reflector: Model
    new_id: str                              # the id the next new lesson will get
    proposals: int = 2                       # reflector samples asking for edits
    max_candidates: int = 3                  # edit candidates kept of those
    reflect_max_tokens: int = 400
    policy_max_tokens: int = 384             # the policy's reply limit (the reflector sees who hit it)
    train: tuple[Task, ...] = ()             # the training split: a skill is tested on tasks it was not written from
    skill_samples: int = 8                   # drafts of a skill search (0: no search)
    pending: tuple[Lesson, ...] = ()         # the scope's proposals waiting for a gate, oldest first, with store ids

    @property
    def evidence(self) -> tuple[str, ...]:
        return tuple(r.id for g in self.groups for r in g)

    @property
    def shown(self) -> list[Task]:
        return [self.tasks[g[0].task_id] for g in self.groups]

    @property
    def rules(self) -> list[Lesson]:
        """The lessons the reflector may edit: all but an instruction lesson."""
        return [x for x in self.lessons if not is_instruction(x)]

    def prompt(self) -> list[dict]:
        """The reflection request for lesson edits over the step's groups."""
        return reflect.build_prompt(self.instruction, self.rules, self.groups, dict(self.tasks), self.batch,
                                    self.taskset.tools, self.policy_max_tokens)


@dataclass(frozen=True)
class Proposal:
    candidates: tuple[Candidate, ...] = ()
    reflections: tuple[Reflection, ...] = ()
    rollouts: tuple[Rollout, ...] = ()       # made on the way, kept as evidence (a skill's tests)


Proposer = Callable[[Step], Proposal]


def apply(step: Step, edit: Edit) -> tuple[tuple[Lesson, ...] | None, str]:
    """The lesson set after `edit`, or None and why it makes no new lesson set. An edited or added lesson goes
    last, where its new id puts it; a rewrite replaces the rules (worked examples and an instruction stay)."""
    current = list(step.lessons)
    new = Lesson(step.new_id, edit.text, step.taskset.name)
    if edit.op == "add":
        rest = current
    elif edit.op == "rewrite":
        gone = [x for x in current if not x.text.startswith(EXAMPLE_PREFIX) and not is_instruction(x)]
        rest = [x for x in current if x not in gone]
        new = replace(new, parent=gone[-1].id if gone else "")
    else:
        rest = [x for x in current if x.id != edit.id]
        if len(rest) == len(current):
            return None, f"{edit.op} of unknown lesson {edit.id!r}"
        if edit.op == "delete":
            return tuple(rest), ""
        new = replace(new, parent=edit.id)
    others = current if edit.op == "rewrite" else rest  # a rewrite that says what a rule it replaces said is no change
    if kept := next((x for x in others if similarity(x.text, edit.text) >= DUPLICATE), None):
        return None, f"repeats {kept.id} in nearly the same words"
    return tuple(rest) + (new,), ""


def candidates_of(step: Step, edits: Sequence[Edit], kind: str, reflection_id: str = "") -> tuple[list[Candidate], str]:
    """A candidate for each edit that makes a new lesson set, and the notes on those that do not."""
    out, notes = [], []
    for e in edits:
        lessons, why = apply(step, e)
        if lessons is None:
            notes.append(f"{e.op} refused: {why}: {e.text[:60]!r}")
        elif is_new(made := Candidate(e, lessons, kind, reflection_id, step.evidence), out):
            out.append(made)
    return out, "; ".join(notes)


def ask(step: Step, kind: str, messages: list[dict], check: Callable[[str], tuple[str, str]], seed: int,
        rollout_ids: Sequence[str]) -> tuple[str, Reflection]:
    """One reflector call for a candidate of its own kind: the checked text ('' if refused) and its record."""
    c = step.reflector.chat(redact_messages(messages), n=1, temperature=0.7, max_tokens=step.reflect_max_tokens,
                            seed=seed)[0]
    text, why = check(c.text) if not c.error else ("", f"reflector failed: {c.error}")
    return text, Reflection(f"f{step.run_id}-{step.index}-{kind}", step.reflector.name, messages[-1]["content"], c.text,
                            tuple(rollout_ids), notes=why, tokens=c.prompt_tokens + c.completion_tokens)


def reflector_edits(step: Step) -> Proposal:
    """The reflector's lesson edits, `step.proposals` samples of them, each edit a candidate of its own."""
    msgs = step.prompt()
    found: list[Candidate] = []
    reflections = []
    for i, c in enumerate(step.reflector.chat(redact_messages(msgs), n=step.proposals, temperature=0.7,
                                              max_tokens=step.reflect_max_tokens, seed=step.seed)):
        rid = f"f{step.run_id}-{step.index}-{i}"
        edits, notes = (reflect.parse(c.text, {x.id for x in step.rules}, step.shown) if not c.error
                        else ([], [f"reflector failed: {c.error}"]))
        made, refused = candidates_of(step, edits, "edit", rid)
        found += [x for x in made if is_new(x, found)]
        reflections.append(Reflection(rid, step.reflector.name, msgs[-1]["content"], c.text, step.evidence,
                                      tuple(edits), "; ".join(notes + [refused] if refused else notes),
                                      c.prompt_tokens + c.completion_tokens))
    return Proposal(tuple(found[:step.max_candidates]), tuple(reflections))


def worked_example(step: Step) -> Proposal:
    """The policy's own best work as a worked example, unless the revision holds one already."""
    if any(x.text.startswith(EXAMPLE_PREFIX) for x in step.lessons):
        return Proposal()
    text = example_from(step.groups, step.tasks)
    return Proposal(tuple(candidates_of(step, [Edit("add", text)], "example")[0])) if text else Proposal()


def demonstration(step: Step) -> Proposal:
    """A worked solution of the shortest failed task, kept only if the reward accepts it. First the reflector's own
    solution with the answer withheld (a stronger model's checked work, as DSPy bootstraps demonstrations); failing
    that, the reflector told the answer writes the working. With the Python tool: the program that solves it, run
    in the sandbox and checked. It replaces a worked example already kept. A question that is also a held-out
    item (a duplicate across splits) is never quoted: its answer would leak into validation and test."""
    # without the tool the reflector is told the reference answer: a task scored by a judge has none to tell
    told = "python" not in step.taskset.tools
    failed = [g for g in step.groups if min(r.score.value for r in g) < 1
              and (step.tasks[g[0].task_id].answer or not told) and not held_out_twin(step, step.tasks[g[0].task_id])]
    if not failed:
        return Proposal()
    group = min(failed, key=lambda g: len(step.tasks[g[0].task_id].prompt))
    task, reward = step.tasks[group[0].task_id], step.taskset.reward
    evidence = [r.id for r in group]
    reflections: tuple[Reflection, ...] = ()
    if "python" in step.taskset.tools:  # the answer is withheld: the program has to compute it
        msgs, check = reflect.tool_demo_prompt(step.instruction, task), lambda raw: reflect.tool_demo_lesson(raw, task, reward)
        text, reflection = ask(step, "demo", msgs, check, step.seed, evidence)
    else:
        text, reflections = bootstrap(step, task, evidence)
        if not text:
            msgs, check = reflect.demo_prompt(step.instruction, task), lambda raw: reflect.demo_lesson(raw, task, reward)
            text, reflection = ask(step, "demo", msgs, check, step.seed, evidence)
        else:
            reflection, reflections = reflections[-1], reflections[:-1]
    if not text:
        return Proposal((), (*reflections, reflection))
    example = next((x for x in step.lessons if x.text.startswith(EXAMPLE_PREFIX)), None)
    edit = Edit("edit", text, example.id) if example else Edit("add", text)
    made, refused = candidates_of(step, [edit], "demo", reflection.id)
    return Proposal(tuple(made), (*reflections, replace(reflection, edits=(edit,), notes=refused)))


BOOTSTRAP_SAMPLES = 3


def bootstrap(step: Step, task: Task, evidence: Sequence[str]) -> tuple[str, tuple[Reflection, ...]]:
    """The reflector answers the task as the policy would (same instruction, the answer not shown), a few times;
    the first reply the reward accepts that shows its working becomes a worked example. ('', the tries) if none."""
    msgs = [{"role": "system", "content": step.instruction}, {"role": "user", "content": task.prompt}]
    cs = step.reflector.chat(redact_messages(msgs), n=BOOTSTRAP_SAMPLES, temperature=0.7,
                             max_tokens=step.policy_max_tokens, seed=step.seed + 2)
    tries, found = [], ""
    for i, c in enumerate(cs):
        text, why = ("", f"reflector failed: {c.error}") if c.error else reflect.bootstrap_lesson(c.text, task, step.taskset.reward)
        tries.append(Reflection(f"f{step.run_id}-{step.index}-boot{i}", step.reflector.name, task.prompt, c.text,
                                tuple(evidence), notes=why, tokens=c.prompt_tokens + c.completion_tokens))
        if text:
            found = text
            break
    return found, tuple(tries)


def held_out_twin(step: Step, task: Task) -> bool:
    """Whether the task's question is also, word for word, a question outside the training split."""
    if not step.train:
        return False
    train = {t.id for t in step.train}
    q = " ".join(task.prompt.lower().split())
    return any(" ".join(t.prompt.lower().split()) == q for t in step.tasks.values() if t.id not in train)


SKILL_STEPS = 2    # a family that yields no program in two searches is left to lessons
SKILL_TESTS = 8    # training tasks each draft is run on
SHOWN = 3          # failed tasks the drafts are written from


def skill(step: Step) -> Proposal:
    """A skill: the program a pass@k search found for the step's failed tasks, tested in the sandbox on training
    tasks it was not written from (skills.search). Searched for in the first SKILL_STEPS steps of a run, until
    a revision holds a skill."""
    if not step.skill_samples or step.index >= SKILL_STEPS or any(skills.is_skill(x.text) for x in step.lessons):
        return Proposal()
    failed = [step.tasks[g[0].task_id] for g in step.groups if min(r.score.value for r in g) < 1]
    shown = sorted(failed, key=lambda t: len(t.prompt))[:SHOWN]
    tests = [t for t in step.train if t not in shown][:SKILL_TESTS]
    if not shown or len(tests) < 2:
        return Proposal()
    found = skills.search(step.reflector, step.instruction, step.taskset.reward, shown, tests,
                          samples=step.skill_samples, seed=step.seed, max_tokens=max(700, step.reflect_max_tokens))
    # every draft is a reflection of its own, with what its tests showed: a person sees what the search tried
    evidence = tuple(r.id for g in step.groups for r in g if step.tasks[r.task_id] in shown)
    reflections = [Reflection(f"f{step.run_id}-{step.index}-skill{i}", step.reflector.name, prompt, raw, evidence,
                              notes=_outcome(d), tokens=tokens)
                   for i, ((prompt, raw, tokens), d) in enumerate(zip(found.asked, found.drafts))]
    if found.best is None:
        return Proposal((), tuple(reflections))
    best = found.best
    where = found.drafts.index(best)
    tests_run = tuple(_test_rollout(step, best, r) for r in best.results)
    passed = [r for r in best.results if r.score.value >= 1]
    shortest = min(passed, key=lambda r: len(step.tasks[r.task_id].prompt))  # the worked call the policy is shown
    text = skills.lesson_text(best.skill, [r.task_id for r in passed], len(best.results),
                              (step.tasks[shortest.task_id].prompt, shortest.output))
    made, refused = candidates_of(step, [Edit("add", text)], "skill", reflections[where].id)
    made = [replace(c, evidence=tuple(r.id for r in tests_run)) for c in made]
    reflections[where] = replace(reflections[where], edits=(Edit("add", text),),
                                 notes="; ".join(x for x in (reflections[where].notes, refused) if x))
    return Proposal(tuple(made), tuple(reflections), tests_run)


def _outcome(d: skills.Draft) -> str:
    if d.skill is None:
        return f"skill draft refused: {d.refused}"
    failed = next((r for r in d.results if r.score.value < 1), None)
    if d.crash:
        return f"skill draft {d.skill.name}: passed 0 of {len(d.results)} tests; it crashed: {d.crash[-160:]}"
    said = "" if failed is None else failed.output[:100] if failed.output.startswith("[error]") else \
        f"{failed.output[:80]!r}: {failed.score.feedback[:100]}"
    return f"skill draft {d.skill.name}: passed {d.passed} of {len(d.results)} tests" + (f"; e.g. {said}" if said else "")


def _test_rollout(step: Step, d: skills.Draft, r: skills.TestResult) -> Rollout:
    """One test of a skill as a rollout, the evidence a person reads beside it: the call, and what it returned."""
    msgs = ({"role": "user", "content": step.tasks[r.task_id].prompt},
            {"role": "assistant", "content": skills.CALL.format(name=d.skill.name)},
            {"role": "user", "content": f"{OUTPUT_HEADER}\n{r.output}"})
    rid = "r" + hashlib.sha256(f"{d.code}\0{r.task_id}".encode()).hexdigest()[:15]
    return Rollout(rid, r.task_id, msgs, r.output, r.score, (), f"skill:{d.skill.name}", step.seed, 0, purpose="skill")


def rule_rewrite(step: Step) -> Proposal:
    """All the rules rewritten as one paragraph (at most reflect.REWRITE_WORDS words) that replaces them."""
    msgs = reflect.rewrite_prompt(step.instruction, step.rules, step.groups, dict(step.tasks), step.batch,
                                  step.taskset.tools, step.policy_max_tokens)
    text, reflection = ask(step, "rewrite", msgs, lambda raw: reflect.parse_guide(raw, step.shown), step.seed + 1,
                           [r.id for r in step.batch])
    if not text:
        return Proposal((), (reflection,))
    made, refused = candidates_of(step, [Edit("rewrite", text)], "rewrite", reflection.id)
    return Proposal(tuple(made), (replace(reflection, edits=(Edit("rewrite", text),), notes=refused),))


PROPOSAL = "proposal"  # the kind of a candidate made of a stored proposal: the loop decides the proposal by its gate
PENDING_PER_STEP = 2   # proposals gated in one step: a queue of them must not spend a run's budget in one go


def proposed(step: Step) -> Proposal:
    """The oldest proposals waiting for a gate, each a candidate of its own: the current lessons and the proposal,
    which keeps its store id (its `Edit` names it), so the one the gate accepts is the row that was proposed. They
    passed the lesson screen when they were proposed; the loop screens them again with the rest."""
    return Proposal(tuple(Candidate(Edit("add", p.text, p.id), (*step.lessons, p), PROPOSAL, p.reflection_id)
                          for p in step.pending[:PENDING_PER_STEP]))


# In this order the reflection and the rewrite, which open with the same evidence, are asked one after the other: a
# local reflector keeps that evidence in its KV cache (0.60 of the reflector time a step on gsm8k; BENCHMARKS.md)
# proposals first: a text someone sent in is gated ahead of the same text written by a proposer of this step
PROPOSERS: tuple[Proposer, ...] = (proposed, reflector_edits, rule_rewrite, worked_example, demonstration, skill)


def propose(step: Step, proposers: Sequence[Proposer] = PROPOSERS) -> Proposal:
    """Every proposer's candidates in order, each lesson set once, and every reflection made on the way."""
    found: list[Candidate] = []
    reflections: list[Reflection] = []
    rollouts: list[Rollout] = []
    for proposer in proposers:
        p = proposer(step)
        reflections += p.reflections
        rollouts += p.rollouts
        found += [c for c in p.candidates if is_new(c, found)]
    return Proposal(tuple(found), tuple(reflections), tuple(rollouts))


def is_new(c: Candidate, found: Sequence[Candidate]) -> bool:
    """Whether `c`'s lesson set (its texts in order) is none of `found`'s: each lesson set is gated once a step."""
    texts = tuple(x.text for x in c.lessons)
    return all(texts != tuple(x.text for x in d.lessons) for d in found)


# ---------------------------------------------------------------- the policy's own best work

def example_from(groups: Sequence[Sequence[Rollout]], tasks: Mapping[str, Task]) -> str:
    """A lesson made of the policy's own best work: a correct attempt that shows its working, from a group where
    other attempts failed (SIMBA-style demonstrations). '' if no attempt qualifies.

    From an episode the example is the whole working, step by step: the code that ran (lines kept), what
    came back and the answer, so a solver the policy once wrote becomes one it can reuse."""
    shows_work = [(len(_working(r).split()), r) for g in groups if min(x.score.value for x in g) < 1
                  for r in g if r.score.value >= 1.0]
    shows_work = [(words, r) for words, r in shows_work if 12 <= words <= MAX_EXAMPLE_WORDS - 30]
    if not shows_work:
        return ""
    best = max(shows_work, key=lambda wr: wr[0])[1]  # the first of the longest
    return f"{EXAMPLE_PREFIX} Question: {' '.join(tasks[best.task_id].prompt.split())} Good answer: {_working(best)}"


def _working(r: Rollout) -> str:
    if not is_episode(r):
        return reflect.plain_math(" ".join(r.completion.split()))
    return "\n" + render_trajectory(r.messages)  # code stays as it ran: its backslashes are not LaTeX
