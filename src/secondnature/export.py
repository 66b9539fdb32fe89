"""A revision out of the store as files other agents read: Agent Skills (a `SKILL.md` a scope, with its checked
programs as scripts beside it) and one rules file (`CLAUDE.md`, `AGENTS.md`, `.cursorrules`).

Both are Markdown a person reads and edits. Each lesson carries an HTML comment (hidden once rendered) with its id,
gain, tags and evidence, and its text sits where `lessonfile.read_lessons` reads it back exactly: a one-line rule as
a bullet, anything longer in a fenced block whose fence is longer than any backtick run inside, a skill's code in
its script (in a rules file, in a ```python block). `skill_files` and `rules_text` are pure; `write_skills` and
`write_rules` are the only IO.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .inject import EXAMPLE_PREFIX, INSTRUCTION_PREFIX
from .lessonfile import BEGIN, BULLET, END, FENCE, MARK, RULES_FORMAT, SKILL_FORMAT, front_matter
from .skills import PRELUDE, is_skill, parse, skills_in
from .store import LessonStore
from .types import Lesson, Revision

NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")  # the Agent Skills rule for `name`, which is also the directory's
MAX_NAME, MAX_DESCRIPTION = 64, 1024
SKILL_CODE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?\n)```", re.S)  # a well-formed block: the script takes it


@dataclass(frozen=True)
class Written:
    path: Path
    scope: str            # one scope for a skill; every scope written, joined by ", ", for a rules file
    revision: int | None
    lessons: int
    scripts: tuple[str, ...] = ()
    replaced: bool = False  # an earlier export at the same path was overwritten


# ---------------------------------------------------------------- writing: pure


def skill_name(scope: str, taken: Sequence[str] = ()) -> str:
    """A name the Agent Skills spec accepts (lowercase letters, digits, single hyphens, at most 64 characters) made
    from the scope, with a number added when another scope's name is already `taken`."""
    base = re.sub(r"[^a-z0-9]+", "-", scope.lower()).strip("-")[:MAX_NAME].strip("-") or "lessons"
    name, k = base, 2
    while name in taken:
        name = f"{base[:MAX_NAME - len(str(k)) - 1].strip('-')}-{k}"
        k += 1
    return name


def _fenced(content: str, info: str = "text") -> str:
    """`content` in a fence longer than any backtick run inside it, so that it comes back out unchanged."""
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{content}\n{fence}"


def _marker(data: dict) -> str:
    """The comment that keeps a lesson's data; '>' is escaped so that no text inside it (a '-->') can end it."""
    return f"<!-- {MARK} {_escaped(data)} -->"


def _escaped(data: dict) -> str:
    return json.dumps(data).replace(">", "\\u003e")


def _inert(text: str) -> str:
    """Display text whose lines cannot be read back as a lesson, a heading, a fence or a marker: a backslash
    escapes the mark that would make them one (Markdown shows the line as it was)."""
    def safe(line: str) -> str:
        if m := re.match(r"\d{1,3}(?=[.)][ \t])", line):
            return f"{m.group(0)}\\{line[m.end():]}"
        return "\\" + line if BULLET.match(line) or FENCE.match(line) or line.startswith(("#", "<", ">")) else line
    return "\n".join(safe(line) for line in text.split("\n"))


def _meta(x: Lesson, n: int) -> dict:
    data = {"n": n, "id": x.id, "gain": x.gain}
    return data | ({"tags": list(x.tags)} if x.tags else {}) | ({"evidence": list(x.evidence)} if x.evidence else {})


def _split_skill(x: Lesson) -> tuple[str, str, str, str] | None:
    """(head, code, tail, function name) of a skill lesson whose code is one well-formed ```python block; None for
    anything else (it is then written as a block of text)."""
    m = SKILL_CODE.search(x.text) if is_skill(x.text) else None
    skill = parse(m.group(1).strip())[0] if m else None
    return (x.text[:m.start(1)], m.group(1), x.text[m.end(1):], skill.name) if skill else None


def _sections(lessons: Sequence[Lesson], level: str, scripts: dict[str, str] | None, rules_title: str = "") -> list[str]:
    """The body's parts: the rules as a list, longer lessons and worked examples as blocks, skills as cards. With
    `scripts` (a dict this fills with path -> source) a skill's code goes to its own script, else into the page."""
    rules, blocks, examples, cards = [], [], [], []
    for n, x in enumerate(lessons):
        if parts := _split_skill(x):
            head, code, tail, name = parts
            found = skills_in([x])[0]
            shown = [f"{level} Skill `{found.signature}`", "", _inert(found.doc), ""]
            if scripts is not None:
                path = f"scripts/{name}.py"
                while path in scripts:
                    path = path.removesuffix(".py") + "_2.py"
                scripts[path] = script(code, found.signature, found.doc, x.scope, x.id)
                question = _quoted(found.example[0]) if found.example else '"QUESTION"'
                shown += [f"Run it: `python {path} {question}` prints its answer.", "",
                          _marker(_meta(x, n) | {"head": head, "tail": tail, "script": path})]
            else:
                shown += [_marker(_meta(x, n) | {"head": head, "tail": tail}), _fenced(code[:-1], "python")]
            cards.append("\n".join(shown + (["", _inert(tail.removeprefix("```").strip())] if tail.strip("`\n")
                                            else [])))
        elif "\n" not in x.text and not x.text.startswith((EXAMPLE_PREFIX, INSTRUCTION_PREFIX)):
            rules.append(f"- {x.text} {_marker(_meta(x, n))}")
        else:
            title = ("Worked example" if x.text.startswith(EXAMPLE_PREFIX) else
                     "Instruction (replaces the task's own)" if x.text.startswith(INSTRUCTION_PREFIX) else "Lesson")
            (examples if title == "Worked example" else blocks).append(
                f"{level} {title}\n\n{_marker(_meta(x, n))}\n{_fenced(x.text)}")
    out = ["\n".join(([rules_title, ""] if rules_title else []) + rules)] if rules else []
    return out + blocks + examples + cards


def _quoted(arg: str) -> str:
    """A shell argument a person reads: in double quotes unless the shell would expand something inside."""
    return f'"{arg}"' if not re.search(r'["$`\\!]', arg) else shlex.quote(arg)


def description(scope: str, lessons: Sequence[Lesson], prompt: str = "") -> str:
    """What the skill is and when to use it, at most 1024 characters and no angle brackets (validators refuse tags)."""
    kinds = [(sum(1 for x in lessons if not is_skill(x.text) and not x.text.startswith(EXAMPLE_PREFIX)), "rule"),
             (sum(1 for x in lessons if x.text.startswith(EXAMPLE_PREFIX)), "worked example"),
             (len(skills_in(lessons)), "checked Python program")]
    held = ", ".join(f"{k} {what}{'s' if k != 1 else ''}" for k, what in kinds if k) or "no lessons yet"
    text = (f"Lessons learned from scored attempts at {scope} tasks and kept because they raised the score on fresh "
            f"ones ({held}). Use it when solving a {scope} task")
    if prompt := " ".join(prompt.split()):
        text += f", for example: {prompt if len(prompt) <= 300 else prompt[:300].rsplit(' ', 1)[0] + '...'}"
    text += "" if text.endswith((".", "?", "!")) else "."
    text = text.replace("<", "").replace(">", "")
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - 3].rsplit(" ", 1)[0] + "..."


def skill_files(scope: str, revision: Revision | None, lessons: Sequence[Lesson], name: str,
                prompt: str = "") -> dict[str, str]:
    """A revision as an Agent Skill: relative path -> text (`SKILL.md`, and a script a checked program)."""
    assert NAME.match(name) and len(name) <= MAX_NAME, name
    scripts: dict[str, str] = {}
    body = _sections(lessons, "##", scripts, "## Rules")
    fields = {"source": "secondnature", "format": SKILL_FORMAT, "scope": scope,
              "revision": str(revision.id) if revision else "", "lessons": " ".join(x.id for x in lessons),
              "gains": " ".join(f"{x.gain:+.3f}" for x in lessons)}
    front = (f"---\nname: {json.dumps(name)}\ndescription: {json.dumps(description(scope, lessons, prompt))}\n"
             "metadata:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in fields.items()) + "---\n")
    rev = f" (secondnature revision {revision.id})" if revision else ""
    intro = (f"# {' '.join(scope.split())}\n\nLessons learned from scored attempts at these tasks and kept because "
             f"they raised the score on fresh ones{rev}. Follow the rules; a worked example shows a good answer in "
             f"full; a script is a program that was checked on training tasks: run it and check its answer.")
    return {"SKILL.md": front + "\n" + "\n\n".join([intro, *body]) + "\n", **scripts}


def script(code: str, signature: str, doc: str, scope: str, lesson_id: str) -> str:
    """A skill as a program a person runs: the imports and the arithmetic-only `eval` the skill had where it was
    checked (the sandbox's prelude), its code unchanged between two marker lines, and a command-line entry."""
    name = signature.split("(")[0]
    return (f"#!/usr/bin/env python3\n# {signature}: {' '.join(doc.split())}\n"
            f"# A program secondnature learned for {' '.join(scope.split())!r} (lesson {lesson_id}) and checked on "
            f"training tasks.\n# Run: python {name}.py QUESTION (or the question on standard input)\n"
            f"{PRELUDE}\n\n{BEGIN}{code}{END}\n\nif __name__ == \"__main__\":\n    import sys\n"
            f"    print({name}(\" \".join(sys.argv[1:]) if len(sys.argv) > 1 else sys.stdin.read()))\n")


def rules_text(heads: Sequence[tuple[str, Revision | None, Sequence[Lesson]]]) -> str:
    """Every scope's lessons as one rules file (CLAUDE.md, AGENTS.md, .cursorrules): a section a scope."""
    parts = [f"<!-- {RULES_FORMAT}: lessons secondnature learned. `secondnature lessons import FILE` reads this file "
             f"back; the comments keep each lesson exact. -->\n# Lessons learned\n\nRules learned from scored attempts "
             f"and kept because they raised the score on fresh tasks, a section for each kind of task."]
    for scope, rev, lessons in heads:
        scope_mark = _escaped({"scope": scope, "revision": rev.id if rev else None})
        parts.append("\n\n".join([f"## {' '.join(scope.split())}\n<!-- secondnature:scope {scope_mark} -->",
                                  *_sections(lessons, "###", None)]))
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------- writing: the store to files


def _revisions(store: LessonStore, scope: str | None, revision: int | None) -> list[tuple[str, Revision]]:
    if revision is not None:
        rev = store.revision(revision)
        if rev is None:
            raise ValueError(f"no revision {revision}; see `secondnature revisions list`")
        if scope and rev.scope != scope:
            raise ValueError(f"revision {revision} is of scope {rev.scope!r}, not {scope!r}; drop --scope or "
                             f"pick a revision of {scope!r} from `secondnature revisions list --scope {scope}`")
        return [(rev.scope, rev)]
    scopes = [scope] if scope else store.scopes()
    if not scopes:
        raise ValueError("the store has no lessons yet; learn some with `secondnature learn TASKSET` first")
    found = [(s, store.head(s)) for s in scopes]
    if missing := [s for s, rev in found if rev is None]:
        raise ValueError(f"no scope {missing[0]!r} in the store; the scopes are {', '.join(store.scopes()) or 'none'}")
    return found


def _scope_in(skill_dir: Path) -> str | None:
    """The scope of the skill an earlier export wrote in `skill_dir`; None if it holds no skill of ours."""
    try:
        meta = front_matter((skill_dir / "SKILL.md").read_text(encoding="utf-8"), skill_dir)[0].get("metadata")
    except (OSError, ValueError):
        return None
    return str(meta.get("scope", "")) if isinstance(meta, dict) and meta.get("source") == "secondnature" else None


def write_skills(store: LessonStore, directory: str | Path, scope: str | None = None,
                 revision: int | None = None) -> list[Written]:
    """Each scope's head (or revision N) as `directory/<name>/SKILL.md` and its scripts. A skill directory an earlier
    export wrote is replaced whole; any other file or directory in the way stops the export before anything is
    written."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is a file; `export skills` writes a directory of skills: name a directory")
    planned, names = [], []
    for s, rev in _revisions(store, scope, revision):
        name, taken = skill_name(s, names), list(names)
        while (held := _scope_in(root / name)) not in (None, s):  # another scope's skill under the same slug
            taken.append(name)
            name = skill_name(s, taken)
        names.append(name)
        target = root / name
        if held is None and target.exists() and not (target.is_dir() and not any(target.iterdir())):
            raise ValueError(f"{target} is in the way and was not written by secondnature; move it, or export to "
                             f"another directory. Nothing was written")
        prompts = store.prompts(s)
        planned.append((s, rev, target, skill_files(s, rev, store.revision_lessons(rev), name,
                                                    prompts[0][1] if prompts else "")))
    done = []
    for s, rev, target, files in planned:
        replaced = target.exists() and any(target.iterdir())
        if replaced:
            shutil.rmtree(target)
        for rel, text in files.items():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).write_text(text, encoding="utf-8")
        done.append(Written(target / "SKILL.md", s, rev.id, len(rev.lesson_ids),
                            tuple(sorted(k for k in files if k != "SKILL.md")), replaced))
    return done


def write_rules(store: LessonStore, path: str | Path, scope: str | None = None) -> Written:
    """Every scope's head (or one scope's) as one rules file. Only a rules file secondnature wrote is overwritten."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; `export rules` writes one file, e.g. {path / 'CLAUDE.md'}")
    replaced = path.exists()
    if replaced and RULES_FORMAT not in path.read_text(encoding="utf-8", errors="replace")[:400]:
        raise ValueError(f"{path} exists and was not written by secondnature; write to another file (and copy the "
                         f"sections you want into it) so that nothing of yours is lost")
    heads = [(s, rev, store.revision_lessons(rev)) for s, rev in _revisions(store, scope, None)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rules_text(heads), encoding="utf-8")
    return Written(path, ", ".join(s for s, _, _ in heads), heads[0][1].id if len(heads) == 1 else None,
                   sum(len(x) for _, _, x in heads), replaced=replaced)
