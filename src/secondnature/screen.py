"""The screen every proposed lesson passes before it can cost a gate: what a lesson may never say.

A lesson is an instruction the policy will follow on every call, written by a model from text that
models produced. So the reflector's chat ("Certainly! Please provide the inputs."), template
placeholders, headings, talk about the attempts it was shown ("Task 3", "the correct attempts"), and
advice that copies a training item (a quoted word of a task, eight words in a row of one, a
distinctive answer: overfitting) are refused here, with the reason, and never reach the policy.

The same text can come from an attacker: a rollout, a tool's output or an imported file can carry an
injection the reflector copies into a lesson. `attack_in` refuses what no lesson has a reason to say:
telling the model to ignore or replace its instructions or role, chat-template role and special tokens,
asking for secrets, keys or the environment, URLs and instructions to send data anywhere, hidden
characters, and an instruction that replaces the task's own unless the user turned those on. It runs on
every lesson before a gate can be paid for it: reflector edits, worked examples, a custom proposer's
candidates, imports and hand edits. Its patterns are deliberately broad: a refused useful lesson costs
one candidate, an accepted injection costs every later call.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from .inject import EXAMPLE_PREFIX, INSTRUCTION_PREFIX, MAX_INSTRUCTION_WORDS
from .skills import block, code_of, is_skill, parse, problem_with_code, skills_in
from .text import words as _words
from .types import Lesson, Task

CONTEXT_TALK = re.compile(r"\b(task|attempt|example)s?\s*(\d|[AB]\b)|\b(correct|wrong|incorrect) attempts?\b|"
                          r"\bthe checker\b", re.I)
FILLER = re.compile(r"please provide|let me know|i'd be happy|i would be happy|certainly[!,.]|as an ai\b|"
                    r"here (are|is) (the|some|my)|feel free|sure[!,.]|if you have any|hope this helps", re.I)

OVERRIDE = re.compile(
    r"\b(ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}\b(instructions?|prompts?|directives?|guidelines|"
    r"(previous|prior|above|earlier|original|system|developer) (rules?|messages?|text|context))\b|"
    r"\b(new|updated|real|actual|hidden|secret) (system )?(instructions|prompt)\b|\byou are (now|no longer)\b|"
    r"\b(act|behave|pretend|roleplay) as (an?|the|if)\b|\bjailbreak|\bdeveloper mode\b|"
    r"\b(unrestricted|unfiltered|uncensored|without (any )?(restrictions|filters|safety))\b|"
    r"\bignore (all |everything |the )?(above|previous|prior|earlier)\b|\bfrom (this point|now) on\b|\boverride\b|"
    r"\byour (previous|prior|earlier|other|original|current|own|usual) (guidance|instructions?|rules|guidelines|"
    r"policy|policies|orders|directives|training)\b|\b(obey|new orders|authori[sz]ed|escaped|can do anything)\b|"
    r"\b(stop|cease|quit) following\b|\b(no|without|any) (rules|guidelines|limits)\b|\bhidden (notes?|text|rules)\b|"
    r"\bskip (all|any|every) (checks?|safety|verification|rules)\b|\bonly this lesson\b|\bas (void|invalid)\b|"
    r"\b(disregard|ignore|forget)\b[^.\n]{0,30}\b(told|given|said|asked)\b|\b(reveal|disclose|divulge|expose)\b|"
    r"\b(no longer|not) (have to |need to |required to )?(follow|obey|bound)\b|\b(take|takes) priority over\b|"
    r"\b(are|is) (only )?(suggestions?|optional)\b|\byour real (task|job|goal|purpose)\b|\b(a|only a|just a) cover\b|"
    r"\bas the (developer|operator|admin|administrator|system) (wants|says|asks)\b|\bDAN\b|"
    r"\b(reveal|repeat|print|show|output|leak)\b[^.\n]{0,30}\b(system prompt|your instructions|your prompt)\b", re.I)
ROLE_TOKENS = re.compile(r"<\|[^|>\n]{1,40}\|>|\[/?INST\]|<</?SYS>>|</?s>|<\|?(im_start|im_end|endoftext|eot_id)|"
                         r"</?tool_call>|^\s*(user|assistant)\s*:|\b(system|developer)\s*:|"
                         r"^\s*(system|assistant|developer|user)\s*$", re.I | re.M)
SECRETS = re.compile(
    r"(?<![a-z])(api[ _-]?keys?|access[ _-]?tokens?|auth(entication)?[ _-]?tokens?|bearer tokens?|secret[ _-]?keys?|"
    r"secrets?|passwords?|passphrases?|credentials?|private[ _-]?keys?|ssh[ _-]?keys?|session[ _-]?cookies?)(?![a-z])|"
    r"\benv(ironment)?[ _-]?var(iable)?s?\b|\bos\.environ\b|\bgetenv\b|/proc/|\.ssh\b|\.env\b|\bprintenv\b|"
    r"\benviron\b|\b(sk|pk|rk|ghp|gho|xox[abp])[-_][A-Za-z0-9]{8,}|\bAKIA[0-9A-Z]{12,}|\bsk-|"
    r"\b(host ?names?|user ?names?|logins?|log-in|sign-in|account details)\b|\bsys\.argv\b|\bargv\b|"
    r"\bworking directory\b|\bgetcwd\b|\bconfig(uration)? files?\b|\b[\w-]+\.(json|ya?ml|ini|cfg|conf|toml|pem)\b|"
    r"\b(conversation|chat|message) history\b|\bbase64\b|\b(system prompt|your prompt|your context)\b|"
    r"\b(home|working|current|user'?s?) (directory|folder)\b|\bfolder you\b|\b(list|read|open|show) (the |all )?files\b|"
    r"\baccess (details|rights|codes?)\b|\b(user'?s?|personal|private|contact) (details|data|information|info)\b|"
    r"\b(api )?provider\b|\bprocess environment\b|\ball variables\b", re.I)
ENV_NAME = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]{2,}\b")  # a name shaped like an environment variable
EXFIL = re.compile(
    r"\b(https?|ftp|wss?|file|data|javascript)://|\bdot (com|net|org|io)\b|\bport \d+\b|\b(connection|connect) to\b|"
    r"\blook (it |this |the answers? )?up (at|on|online)\b|\b(mailbox|inbox|e-?mail address|drive link|shared drive|"
    r"pastebin|dropbox|google drive|s3 bucket)\b|\b(upload|forward|transmit|exfiltrate)\b|\bwww\.[a-z0-9-]+\.|\b[a-z0-9-]+\.(com|net|org|io|ai|dev|xyz|ru|cn)\b|"
    r"\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b|\b(curl|wget|netcat|ncat|requests\.(get|post)|urllib|urlopen|socket|webhook|smtp)\b|"
    r"\b(send|post|upload|email|e-mail|forward|transmit|exfiltrate|leak)\b[^.\n]{0,40}\b(to|into|at)\b[^.\n]{0,20}"
    r"\b(server|address|endpoint|url|site|website|inbox|channel|attacker|me|us)\b", re.I)
HIDDEN = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]")
MAX_SCREEN_CHARS = 4000  # longer than any lesson may be (MAX_EXAMPLE_WORDS): the patterns stay cheap


def attack_in(text: str, *, allow_instruction: bool = False) -> str:
    """Why `text` must never become a lesson, as an injection or a leak ('' when the screen finds nothing). A skill's
    code meets the code screen (skills.problem_with_code: no files, environment or network), and what the policy
    reads of it (its card and worked call) the patterns below."""
    if is_skill(text):
        skill, why = parse(code_of(text))
        if skill is None or (why := problem_with_code(skill.code)):
            return f"a skill the code screen refuses: {why}"
        text = block(skills_in([Lesson("", text, "")]))  # what the policy reads: the card and the worked call
    if HIDDEN.search(text):
        return "hidden characters (zero-width or direction controls)"
    # fullwidth and other look-alikes fold to ASCII, and markup goes: '**system: ...**' is a role line too
    plain = re.sub(r"[*`#~]+", "", unicodedata.normalize("NFKC", text[:MAX_SCREEN_CHARS]))
    if INSTRUCTION_PREFIX.lower() in plain.lower() and not (allow_instruction and text.startswith(INSTRUCTION_PREFIX)):
        return ("replaces the task's instruction (instruction lessons are off; turn them on to allow this)"
                if not allow_instruction else "an instruction marker inside a lesson: it must open the lesson")
    for pattern, why in ((ROLE_TOKENS, "chat-template role or special tokens"),
                         (OVERRIDE, "tells the model to ignore or replace its instructions or role"),
                         (SECRETS, "asks for or names secrets, keys or the environment"),
                         (ENV_NAME, "names an environment variable"),
                         (EXFIL, "a URL, an address, or an instruction to send data somewhere")):
        if m := pattern.search(plain):
            return f"refused by the safety screen: {why} ({m.group(0).strip()[:40]!r})"
    return ""


MAX_EXAMPLE_WORDS = 160
MAX_RULE_WORDS = 80


def problem_with(text: str, *, allow_instruction: bool = False) -> str:
    """Why a proposed lesson text is not a lesson ('' if it is one): the safety screen first, then the rest."""
    if is_skill(text):  # code: the safety screen is all a skill meets (its words are the card)
        return attack_in(text)
    if attack := attack_in(text, allow_instruction=allow_instruction):
        return attack
    words = text.split()
    if len(words) < 4:
        return "too short to be a lesson"
    if text.startswith(INSTRUCTION_PREFIX):
        words, limit = text[len(INSTRUCTION_PREFIX):].split(), MAX_INSTRUCTION_WORDS
    else:
        limit = MAX_EXAMPLE_WORDS if text.startswith(EXAMPLE_PREFIX) else MAX_RULE_WORDS
    if len(words) > limit:
        return f"too long ({len(words)} words; at most {limit})"
    if re.sub(r"[*_#`\s]+$", "", text).endswith(":"):
        return "a heading, not a lesson"
    if FILLER.search(text):
        return "chat filler, not a lesson"
    if re.search(r"<(new|better|another new) lesson>", text):
        return "the template placeholder, not a lesson"
    if CONTEXT_TALK.search(text):
        return "talks about the attempts it was shown instead of advising the next one"
    return ""


COPY_NGRAM = 8  # words in a row shared with a task prompt: a copied sentence, not advice


def _distinctive(answer: str) -> bool:
    """An answer specific enough that a lesson naming it names the item: a date, a long number, a phrase."""
    a = answer.strip()
    return (len(a) >= 4 and any(ch.isdigit() for ch in a)) or len(a.split()) >= 2


def copied_item(text: str, tasks: Sequence[Task]) -> str:
    """What a proposed lesson copies from a task shown ('' if nothing): a quoted word or phrase of 4+
    characters from its prompt, a run of COPY_NGRAM words of its prompt, or its answer when that answer
    is distinctive. A lesson that names a training item's specifics teaches that item, not the skill
    (overfitting). Worked examples are exempt: they are a labelled copy by design, one at most, and gated."""
    if text.startswith(EXAMPLE_PREFIX):
        return ""
    text = text[:MAX_SCREEN_CHARS]  # longer than any lesson may be: the quote pattern stays cheap on any input
    # a lookahead, so quotes overlap: in "the letter 'n' in the word 'obsession'" the quote that closes one
    # span opens the next, and a consuming match would skip 'obsession'
    for q in re.findall(r"(?=['\"‘“]([^'\"’”]{4,})['\"’”])", text):
        for t in tasks:
            if q.lower() in t.prompt.lower():
                return q
    words = _words(text)
    grams = {tuple(words[i:i + COPY_NGRAM]) for i in range(len(words) - COPY_NGRAM + 1)}
    low = " ".join(words)
    for t in tasks:
        tw = _words(t.prompt)
        for i in range(len(tw) - COPY_NGRAM + 1):
            if tuple(tw[i:i + COPY_NGRAM]) in grams:
                return " ".join(tw[i:i + COPY_NGRAM])
        if _distinctive(t.answer) and (aw := " ".join(_words(t.answer))) and re.search(rf"\b{re.escape(aw)}\b", low):
            return t.answer.strip()
    return ""
