"""Lessons files read back for `secondnature lessons import`: the JSON of `lessons export`, Agent Skills (a
SKILL.md, or a directory of them) and rules files (CLAUDE.md, AGENTS.md, .cursorrules), whether secondnature wrote
them (export.py) or a person did.

A lesson secondnature wrote carries an HTML comment with its data (id, gain, tags, evidence) and its text comes
back exactly: a one-line rule from its bullet, a longer lesson from the fenced block after its comment, a skill from
its head and tail around its code (in its script, or the ```python block after the comment). In a file written by
hand every top-level bullet is a lesson, joined into one line. The front matter is read without a YAML library: the
part of YAML that skills use.
"""
from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

SKILL_FORMAT = "secondnature-skill/1"
RULES_FORMAT = "secondnature-rules/1"
JSON_FORMAT = "secondnature-lessons/1"
MARK = "secondnature:lesson"
MARKER = re.compile(r"<!-- secondnature:(lesson|scope) (\{[^>]*\}) -->[ \t]*$")  # the JSON escapes every '>'
BULLET = re.compile(r"^([-*+]|\d{1,3}[.)])[ \t]+(.*)$")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
BEGIN, END = "# --- the skill: `secondnature lessons import` reads this part back ---\n", "# --- end of the skill ---\n"
HOW_TO_MAKE = ("make one with `secondnature lessons export FILE`, `secondnature export skills DIR` or "
               "`secondnature export rules FILE`")


@dataclass(frozen=True)
class Found:
    """What a lessons file holds: per scope, dicts with "text" (and "gain", "tags", "evidence" where it says them),
    and the prompts each scope learned on (only a JSON export carries them)."""

    scopes: dict[str, list[dict]]
    prompts: dict[str, list]
    format: str


def read_lessons(path: str | Path, scope: str | None = None) -> Found:
    """The lessons in `path`: a JSON export, a SKILL.md, a directory of skills (DIR/SKILL.md or DIR/*/SKILL.md) or a
    rules file. `scope` names the scope of lessons the file does not place (a rules file's bullets outside any `## `
    section, a SKILL.md without a secondnature scope); else a rules file's name, a skill's name. Raises ValueError
    naming the file, what is wrong and what to do; nothing is read in part."""
    path = Path(path)
    if path.is_dir():
        files = [path / "SKILL.md"] if (path / "SKILL.md").is_file() else sorted(path.glob("*/SKILL.md"))
        if not files:
            raise ValueError(f"{path} holds no SKILL.md (nor DIR/*/SKILL.md); import a directory `secondnature export "
                             f"skills DIR` wrote, a SKILL.md, a rules file or a JSON export")
        scopes: dict[str, list[dict]] = {}
        for f in files:
            s, items = _skill(f, _text(f), scope)
            scopes.setdefault(s, []).extend(items)
        return Found({s: _unique(items) for s, items in scopes.items()}, {}, SKILL_FORMAT)
    text = _text(path)
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        return _json_export(path, text)
    if path.name.lower() == "skill.md" or (RULES_FORMAT not in text[:1000]
                                           and "name" in front_matter(text, path, strict=False)[0]):
        s, items = _skill(path, text, scope)
        return Found({s: _unique(items)}, {}, SKILL_FORMAT)
    fields, body, start = front_matter(text, path, strict=False)  # a Cursor rule (.mdc) opens with front matter too
    found = _lessons_in(body, path, start, scope or path.stem.lstrip(".") or "lessons", headings=True)
    if not found:
        raise ValueError(f"{path}: no lessons found; in a rules file each top-level `- ` bullet is a lesson (under a "
                         f"`## ` heading naming its scope), or {HOW_TO_MAKE}")
    scopes = {}
    for s, item in found:
        scopes.setdefault(s, []).append(item)
    return Found({s: _unique(items) for s, items in scopes.items()}, {}, RULES_FORMAT)


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a lessons export ({type(e).__name__}: {e}); {HOW_TO_MAKE}") from e
    except OSError as e:
        raise ValueError(f"cannot read {path} ({e.strerror or e}); give the path of a lessons file") from e


def _json_export(path: Path, text: str) -> Found:
    """`secondnature lessons export FILE`'s format: {"format", "scopes": {scope: [lesson, ...]}, "prompts"}."""
    try:
        data = json.loads(text)
        scopes, prompts = data["scopes"], data.get("prompts") or {}
        if not isinstance(scopes, dict) or not isinstance(prompts, dict):
            raise TypeError('"scopes" and "prompts" must be objects keyed by scope')
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is not a lessons export ({type(e).__name__}: {e}); make one with "
                         f"`secondnature lessons export FILE`") from e
    return Found(scopes, prompts, JSON_FORMAT)


def _skill(path: Path, text: str, scope: str | None) -> tuple[str, list[dict]]:
    fields, body, start = front_matter(text, path)
    meta = fields.get("metadata") if isinstance(fields.get("metadata"), dict) else {}
    own = str(meta.get("scope") or scope or fields.get("name") or path.parent.name)
    items = [item for _, item in _lessons_in(body, path, start, own, base=path.parent)]
    if not items:
        raise ValueError(f"{path}: no lessons found; in a SKILL.md each top-level `- ` bullet is a lesson, or "
                         f"{HOW_TO_MAKE}")
    return own, items


def _unique(items: list[tuple[tuple[int, int], dict]]) -> list[dict]:
    """The lessons in the order they were exported (hand-written ones after), each text once."""
    seen, out = set(), []
    for _, item in sorted(items, key=lambda x: x[0]):
        if item["text"] not in seen:
            seen.add(item["text"])
            out.append(item)
    return out


def _lessons_in(body: str, path: Path, start: int, scope: str, *, base: Path | None = None,
                headings: bool = False) -> list[tuple[str, tuple[tuple[int, int], dict]]]:
    """(scope, (order, lesson)) for each lesson in a Markdown body: marked lessons exactly, and every other top-level
    bullet as a hand-written one. With `headings`, a `## ` heading starts the lessons of the scope it names."""
    lines, out, i = body.split("\n"), [], 0
    while i < len(lines):
        line, where = lines[i], f"{path}, line {start + i + 1}"
        marked = MARKER.match(line.strip()) if line.lstrip().startswith("<!--") else None
        bullet = BULLET.match(line)
        if marked and marked.group(1) == "scope":
            scope, i = str(_object(marked.group(2), where).get("scope") or scope), i + 1
        elif marked:
            data = _object(marked.group(2), where)
            text, i = _marked_text(data, lines, i, where, base)
            out.append((scope, ((0, _order(data)), _item(text, data))))
        elif FENCE.match(line):  # a code block of a hand-written file: not a lesson by itself
            i = _fence_end(lines, i, where) + 1
        elif line.startswith("<!--"):  # any other comment, to its end
            while i < len(lines) and "-->" not in lines[i]:
                i += 1
            i += 1
        elif headings and (h := re.match(r"^##[ \t]+(.+?)[ \t#]*$", line)):
            scope, i = h.group(1), i + 1
        elif bullet and (exact := re.match(rf"^- (.*) <!-- {MARK} (\{{[^>]*\}}) -->[ \t]*$", line)):
            data = _object(exact.group(2), where)
            out.append((scope, ((0, _order(data)), _item(exact.group(1), data))))
            i += 1
        elif bullet:
            text, i = _bullet(lines, i, bullet.group(2))
            if text:
                out.append((scope, ((1, len(out)), {"text": text})))
        else:
            i += 1
    return out


def _bullet(lines: list[str], i: int, first: str) -> tuple[str, int]:
    """A hand-written bullet and the lines that continue it: one line of text, or its lines when it holds a code
    block (there lines carry meaning)."""
    parts, j = [first], i + 1
    while j < len(lines):
        if not lines[j].strip():  # a blank line continues the item only when an indented line follows
            k = next((k for k in range(j, len(lines)) if lines[k].strip()), len(lines))
            if k == len(lines) or lines[k][:1] not in (" ", "\t"):
                break
            parts += lines[j:k]
            j = k
        elif lines[j][:1] in (" ", "\t") or not (BULLET.match(lines[j]) or FENCE.match(lines[j])
                                                or lines[j].startswith(("#", "<!--", "---", ">"))):
            parts.append(lines[j])
            j += 1
        else:
            break
    if any(FENCE.match(p.strip()) for p in parts[1:]):
        return (first.strip() + "\n" + textwrap.dedent("\n".join(parts[1:]))).strip(), j
    return " ".join(" ".join(parts).split()), j


def _marked_text(data: dict, lines: list[str], i: int, where: str, base: Path | None) -> tuple[str, int]:
    """A marked lesson's exact text: the fenced block after its marker, or for a skill its head and tail around its
    code (from the block, or from its script beside the SKILL.md)."""
    if "head" not in data:
        return _next_block(lines, i + 1, where)
    head, tail = str(data["head"]), str(data.get("tail", ""))
    if "script" in data and base is not None:
        file = (base / str(data["script"])).resolve()
        if base.resolve() not in file.parents:
            raise ValueError(f"{where}: the script {data['script']!r} is outside the skill's directory; a skill's "
                             f"script lives in its scripts/ folder")
        source = _text(file) if file.is_file() else ""
        if not source or BEGIN not in source or END not in source.partition(BEGIN)[2]:
            raise ValueError(f"{where}: {data['script']} is missing, or lost its lines {BEGIN.strip()!r} and "
                             f"{END.strip()!r}; export the skill again, or put the code back between those lines")
        return head + source.partition(BEGIN)[2].rpartition(END)[0] + tail, i + 1
    code, i = _next_block(lines, i + 1, where)
    return head + code + "\n" + tail, i


def _next_block(lines: list[str], i: int, where: str) -> tuple[str, int]:
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i == len(lines) or not FENCE.match(lines[i]):
        raise ValueError(f"{where}: a lesson marker is not followed by its fenced block; put the block back after "
                         f"the marker, or delete the marker line")
    end = _fence_end(lines, i, where)
    return "\n".join(lines[i + 1:end]), end + 1


def _fence_end(lines: list[str], i: int, where: str) -> int:
    fence = FENCE.match(lines[i]).group(1)
    close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
    end = next((k for k in range(i + 1, len(lines)) if close.match(lines[k])), None)
    if end is None:
        raise ValueError(f"{where}: the {fence} block opened here is never closed; end it with a line {fence}")
    return end


def _object(raw: str, where: str) -> dict:
    try:
        data = json.loads(raw)
        if isinstance(data, dict):
            return data
    except ValueError:
        pass
    raise ValueError(f"{where}: a secondnature comment holds no valid data; restore it as it was exported, or "
                     f"delete the comment (a bullet then reads as a hand-written lesson)")


def _order(data: dict) -> int:
    """Where the lesson stood in its revision (the sections group rules, examples and skills apart)."""
    return data["n"] if isinstance(data.get("n"), int) else 0


def _item(text: str, data: dict) -> dict:
    item: dict = {"text": text}
    if isinstance(data.get("gain"), int | float):
        item["gain"] = float(data["gain"])
    item |= {k: [str(v) for v in data[k]] for k in ("tags", "evidence") if isinstance(data.get(k), list)}
    return item


# ---------------------------------------------------------------- front matter: the YAML a SKILL.md opens with

KEY = re.compile(r"^([A-Za-z0-9_.-]+)[ \t]*:(?:[ \t]+(.*?))?[ \t]*$")


def front_matter(text: str, path: Path, strict: bool = True) -> tuple[dict, str, int]:
    """(fields, body, lines before the body). Reads the YAML that skills use, not all of YAML: `key: value` lines,
    quoted or plain values, `|` and `>` blocks, a nested mapping (metadata) and lists. Without `strict`, a first
    line `---` that is never closed is Markdown, not front matter."""
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return {}, text, 0
    end = next((k for k in range(1, len(lines)) if lines[k].rstrip() in ("---", "...")), None)
    if end is None:
        if not strict:
            return {}, text, 0
        raise ValueError(f"{path}: the front matter opened on line 1 is never closed; end it with a line ---")
    return _mapping(lines[1:end], path, 2), "\n".join(lines[end + 1:]), end + 1


def _mapping(lines: list[str], path: Path, first: int) -> dict:
    out: dict = {}
    k = 0
    while k < len(lines):
        line = lines[k]
        if not line.strip() or line.lstrip().startswith("#"):
            k += 1
            continue
        m = KEY.match(line)
        if not m:
            raise ValueError(f"{path}, line {first + k}: {line.strip()!r} in the front matter is not `key: value`; "
                             f"quote a value that holds a colon, e.g. description: \"...\"")
        at, k = k, k + 1
        while k < len(lines) and (not lines[k].strip() or lines[k][:1] in (" ", "\t")):
            k += 1
        block = lines[at + 1:k]
        out[m.group(1)] = _value(m.group(2) or "", block, path, first + at)
    return out


def _value(value: str, block: list[str], path: Path, line: int):
    inner = textwrap.dedent("\n".join(block)).strip("\n").split("\n") if any(x.strip() for x in block) else []
    if value[:1] in ("|", ">"):
        return ("\n" if value[0] == "|" else " ").join(x if value[0] == "|" else x.strip() for x in inner).strip()
    if not value and inner:
        if inner[0].startswith("- "):
            return [_scalar(x.strip()[2:], path, line) for x in inner if x.strip().startswith("- ")]
        return _mapping(inner, path, line + 1)
    return _scalar(" ".join([value, *(x.strip() for x in inner)]).strip(), path, line)


def _scalar(v: str, path: Path, line: int):
    """A value: double-quoted (JSON's escapes, which is what secondnature writes), single-quoted, a JSON-style flow
    list or mapping, or plain text (a trailing ` # comment` dropped)."""
    if v[:1] in ("'", '"'):
        m = re.match(r'^"((?:[^"\\]|\\.)*)"' if v[0] == '"' else r"^'((?:[^']|'')*)'", v)
        if not m or not re.fullmatch(r"[ \t]*(#.*)?", v[m.end():]):
            raise ValueError(f"{path}, line {line}: the quoted value {v[:40]!r} is not closed at its end; end it "
                             f"with {v[0]}")
        if v[0] == "'":
            return m.group(1).replace("''", "'")
        try:
            return json.loads(m.group(0))
        except ValueError:  # a YAML escape JSON lacks: the text between the quotes
            return m.group(1)
    if v[:1] in ("{", "["):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return re.sub(r"[ \t]+#.*$", "", v)
