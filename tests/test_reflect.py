"""Reflection: the parser is tolerant of format and strict about what counts as a lesson; the prompt shows contrasts."""
from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secondnature import reflect
from secondnature.evidence import evidence, order_groups
from secondnature.inject import EXAMPLE_PREFIX
from secondnature.models import ScriptedModel
from secondnature.propose import Step, example_from
from secondnature.reflect import EXAMPLE_ADD, build_prompt, parse
from secondnature.rewards import exact
from secondnature.screen import copied_item
from secondnature.types import Edit, Lesson, Rollout, Score, Task, TaskSet


def step_with(lessons: list[Lesson]) -> Step:
    """A step of the loop whose current revision holds `lessons`, for the proposers' helpers."""
    ts = TaskSet("letters", (), exact, "Count.")
    return Step(1, 0, 0, ts, "Count.", tuple(lessons), (), (), {}, ScriptedModel([]), "L9")

GOOD = "Spell the word letter by letter, then count the matching letters."
GOOD2 = "Write the final answer on its own line as Answer: N."


def adds(*texts: str) -> list[Edit]:
    return [Edit("add", t) for t in texts]


def ro(rid: str, task_id: str, value: float, completion: str = "") -> Rollout:
    return Rollout(rid, task_id, (), completion or f"attempt {rid}", Score(value, f"feedback {rid}"), (), "m", 0, 0)


# ---------------------------------------------------------------- parse: formats

def test_plain_json() -> None:
    raw = json.dumps({"edits": [{"op": "add", "text": GOOD}, {"op": "add", "text": GOOD2}]})
    assert parse(raw, set()) == (adds(GOOD, GOOD2), [])


def test_fenced_json_with_chatter_around() -> None:
    raw = f'Here is my analysis.\n```json\n{{"edits": [{{"op": "add", "text": "{GOOD}"}}]}}\n```\nGood luck!'
    edits, notes = parse(raw, set())
    assert edits == adds(GOOD) and notes == []


def test_json_list_of_strings() -> None:
    assert parse(json.dumps([GOOD, GOOD2]), set())[0] == adds(GOOD, GOOD2)


def test_dict_with_lessons_key() -> None:
    assert parse(json.dumps({"lessons": [GOOD, {"lesson": GOOD2}]}), set())[0] == adds(GOOD, GOOD2)


def test_numbered_plain_text_list() -> None:
    raw = f"Lessons:\n1. {GOOD}\n2) {GOOD2}\n3. Too short."
    assert parse(raw, set())[0] == adds(GOOD, GOOD2)


def test_op_synonyms_are_normalised() -> None:
    raw = json.dumps({"edits": [{"action": "update", "lesson_id": "L1", "text": GOOD},
                                {"op": "remove", "id": "L2"}, {"op": "create", "content": GOOD2}]})
    edits, notes = parse(raw, {"L1", "L2"})
    assert edits == [Edit("edit", GOOD, "L1"), Edit("delete", "", "L2"), Edit("add", GOOD2)] and notes == []


def test_a_narrated_edit_keeps_only_the_lesson() -> None:
    """Seen on gsm8k: the reflector's sentence about the edit arrived as the lesson's text."""
    narrated = f'Add a lesson that provides a general guideline for solving problems: "{GOOD}'
    assert parse(json.dumps([narrated, f"New lesson: {GOOD2}"]), set())[0] == adds(GOOD, GOOD2)
    plain = "Write each step on its own line: the quantity, the operation, then the result."
    assert parse(json.dumps([plain]), set())[0] == adds(plain)  # an instruction that starts with a verb stays


def test_an_escaped_quote_inside_a_json_string_in_chatter() -> None:
    lesson = 'Give a length such as 5" as the bare number 5 on the answer line, with no unit.'  # one quote: odd
    raw = "My edits:\n" + json.dumps({"edits": [{"op": "add", "text": lesson}]}) + "\nThat is all."
    assert parse(raw, set())[0] == adds(lesson)


def test_duplicates_are_kept_once() -> None:
    assert parse(json.dumps([GOOD, GOOD.upper(), f"  {GOOD}  "]), set())[0] == adds(GOOD)


def test_garbage_gives_no_edits_and_a_note() -> None:
    edits, notes = parse("Certainly! Please provide the inputs.", {"L1"})
    assert edits == [] and len(notes) == 1 and "no edits" in notes[0]
    edits, notes = parse("", set())
    assert edits == [] and notes


# ---------------------------------------------------------------- parse: what counts as a lesson

def test_edit_and_delete_of_unknown_ids_are_dropped_with_a_note() -> None:
    raw = json.dumps({"edits": [{"op": "edit", "id": "L9", "text": GOOD}, {"op": "delete", "id": "L8"},
                                {"op": "delete", "id": "L1"}, {"op": "edit", "id": "L2", "text": GOOD2}]})
    edits, notes = parse(raw, {"L1", "L2"})
    assert edits == [Edit("delete", "", "L1"), Edit("edit", GOOD2, "L2")]
    assert any("L9" in n for n in notes) and any("L8" in n for n in notes)


def test_unknown_op_is_dropped_with_a_note() -> None:
    edits, notes = parse(json.dumps([{"op": "merge", "text": GOOD}]), set())
    assert edits == [] and any("merge" in n for n in notes)


def test_chat_filler_is_rejected() -> None:
    raw = json.dumps(["Certainly! Please provide the inputs so I can help you.",
                      "If you have any specific requirements or questions, let me know.",
                      "I'd be happy to help you write better lessons for this.", GOOD])
    edits, notes = parse(raw, set())
    assert edits == adds(GOOD)
    assert len(notes) == 3 and all("filler" in n for n in notes)


def test_template_placeholders_are_rejected() -> None:
    edits, notes = parse(EXAMPLE_ADD, set())
    assert edits == [] and len(notes) == 2
    edits, notes = parse(json.dumps(["Always check each step and write <new lesson> here for later."]), set())
    assert edits == [] and "placeholder" in notes[0]


def test_lessons_about_the_shown_attempts_are_rejected() -> None:
    raw = json.dumps(["In Task 1 the assistant forgot to count the last letter.",
                      "Do what the correct attempts did and count each letter twice.",
                      "Attempt B stopped before writing any final answer line.", GOOD])
    edits, notes = parse(raw, set())
    assert edits == adds(GOOD)
    assert len(notes) == 3 and all("talks about the attempts" in n for n in notes)


def test_too_short_and_too_long_are_rejected() -> None:
    edits, notes = parse(json.dumps(["Count carefully.", " ".join(["word"] * 81), GOOD]), set())
    assert edits == adds(GOOD) and len(notes) == 2


def test_copied_item_rejects_a_quoted_word_from_a_shown_task() -> None:
    shown = [Task("t1", 'How many times does the letter "r" appear in "strawberry"?', "3")]
    lesson = 'Spell "strawberry" letter by letter before counting any letter.'
    assert copied_item(lesson, shown) == "strawberry"
    assert copied_item(lesson, [Task("t2", "How many e in 'cheese'?", "3")]) == ""
    assert copied_item(GOOD, shown) == ""
    edits, notes = parse(json.dumps([lesson, GOOD]), set(), shown)
    assert edits == adds(GOOD) and "strawberry" in notes[0]
    assert parse(json.dumps([lesson]), set())[0] == adds(lesson)  # nothing shown: nothing to copy
    # a short quote before it: the quote closing 'n' opens 'obsession' (a lesson learned this way once passed)
    shown = [Task("t3", "How many times does the letter 'n' appear in the word 'obsession'?", "1")]
    assert copied_item("Count how many times the letter 'n' appears in the word 'obsession'.", shown) == "obsession"


def test_copied_item_rejects_a_copied_sentence_and_a_distinctive_answer() -> None:
    date = Task("d1", "Jane quited her job on Mar 20, 2020. 176 days have passed since then. What is the date today?",
                "09/12/2020")
    copied = "Remember: Jane quited her job on Mar 20, 2020. 176 days have passed, so add the days."
    assert copied_item(copied, [date]) == "jane quited her job on mar 20 2020"
    assert copied_item("When the answer is 09/12/2020, check the month lengths first.", [date]) == "09/12/2020"
    generic = "Add the days month by month, using each month's length, before choosing an option."
    assert copied_item(generic, [date]) == ""
    # short answers and option letters are too common to count as copies
    assert copied_item("Answer with 3 only after counting each letter in turn.", [Task("t", "Count r", "3")]) == ""
    assert copied_item("Pick the option such as (B) that matches your result.", [Task("t", "x", "(B)")]) == ""
    sort = Task("w", "Sort these words: pear apple", "apple pear")
    assert copied_item("List the words as apple pear, in order.", [sort]) == "apple pear"
    example = f"{EXAMPLE_PREFIX} {copied}"
    assert copied_item(example, [date]) == ""  # a worked example is a labelled copy, gated like any lesson


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["edits", "lessons", "op", "action", "text", "lesson", "id", "content", "x"]),
        children, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.text(), json_values.map(json.dumps),
                     st.tuples(st.text(max_size=30), json_values.map(json.dumps), st.text(max_size=30))
                     .map(lambda t: f"{t[0]}```json\n{t[1]}\n```{t[2]}")))
def test_parse_never_raises_and_only_returns_valid_edits(raw: str) -> None:
    known = {"L1", "L2"}
    edits, notes = parse(raw, known)
    assert all(isinstance(n, str) for n in notes)
    assert edits or notes
    for e in edits:
        assert e.op in ("add", "edit", "delete")
        if e.op != "add":
            assert e.id in known
        if e.op != "delete":
            assert 4 <= len(e.text.split()) <= 80


def test_a_list_item_that_names_its_operation_is_that_operation() -> None:
    raw = """My edits:
1. **Edit L1**: Count each object once, then add up the totals at the end.
2. **Add Lesson 2:** Always list every item with its quantity before adding.
3. Delete L2:
4. Remove duplicate items before you count anything in the list.
Edit 2: Write every number as a digit before you add them together.
"""
    edits, _ = parse(raw, {"L1", "L2"})
    assert edits == [Edit("edit", "Count each object once, then add up the totals at the end.", "L1"),
                     Edit("add", "Always list every item with its quantity before adding."),
                     Edit("delete", "", "L2"),
                     # no bold, no colon: a lesson that starts with an operation's word stays a lesson
                     Edit("add", "Remove duplicate items before you count anything in the list."),
                     Edit("edit", "Write every number as a digit before you add them together.", "L2")]
    sent_as_json = json.dumps([{"op": "add", "text": "**Edit L1**: Count each object once, then add them all up."}])
    assert parse(sent_as_json, {"L1"})[0] == [Edit("edit", "Count each object once, then add them all up.", "L1")]


def test_parse_survives_deeply_nested_brackets() -> None:
    edits, notes = parse("[" * 1100 + "]" * 1100, {"L1"})
    assert edits == [] and notes


def test_json_after_a_stray_quote_and_brace_in_the_chatter_is_found() -> None:
    edit = json.dumps({"edits": [{"op": "add", "text": GOOD}]})
    for chatter in ('The attempts wrote "5 inches { without closing.\n', 'Use {x} and "quoted" text.\n', "{[\n"):
        assert parse(chatter + edit, set())[0] == adds(GOOD), chatter
    assert parse('{"edits": [{"op": "add", "text": "Say \\"Answer: N\\" on the last line of the reply."}]}',
                 set())[0] == adds('Say "Answer: N" on the last line of the reply.')


def test_a_reply_beyond_the_limit_is_read_up_to_it() -> None:
    edit = json.dumps({"edits": [{"op": "add", "text": GOOD}]})
    assert parse(edit + " " * (2 * reflect.MAX_REPLY), set())[0] == adds(GOOD)
    assert parse("x" * reflect.MAX_REPLY + edit, set())[0] == []


def test_long_lists_read_only_the_first_edits_and_overlong_lessons_are_refused() -> None:
    many = json.dumps([f"{GOOD} Variant {i}." for i in range(200)])
    edits, _ = parse(many, set())
    assert len(edits) == reflect.MAX_EDITS
    huge = json.dumps([("Check the work " + "carefully " * 400).strip()])
    edits, notes = parse(huge, set())
    assert edits == [] and "too long" in notes[0] and "characters" in notes[0]


# Replies built to make a parser go round once per character pair, or a pattern backtrack: 20,000 to 100,000
# characters each. 20,000 '{' took 12 s; '\\[' and spaces took minutes in plain_math.
HOSTILE = {
    "braces": "{" * 20_000, "brackets": "[" * 100_000, "quote braces": '{"' * 50_000,
    "balanced": "{" * 10_000 + "}" * 10_000,
    "backticks": "`" * 100_000, "fences": "```\n" * 25_000, "json fences": "```json" + " " * 100_000,
    "newlines": "\n" * 100_000, "newline spaces": "\n " * 50_000, "quotes": '"' * 100_000,
    "display math": "\\[" + " " * 50_000, "display maths": "\\[" * 50_000, "fractions": "\\frac{" * 20_000,
    "bold labels": "- **add lesson" + " " * 100_000 + "x", "labels": "Add" + " " * 100_000 + "x",
    "guides": "<guide>" * 15_000, "list": "Do this step by step:\n\n" + "- step\n\n" * 20_000,
    "sentences": "Check it. " * 10_000, "curly quotes": "\u201c" * 20_000 + " a b c d",
    "long words": ("w" * 5_000 + " ") * 20,
}
PARSERS = {
    "parse": lambda raw: parse(raw, {"L1"}, [Task("t", "Count the letters in 'banana'.", "3")]),
    "parse_guide": lambda raw: reflect.parse_guide(raw, [Task("t", "Count the letters in 'banana'.", "3")]),
    "demo_lesson": lambda raw: reflect.demo_lesson(raw, Task("t", "What is 2+2?", "4"), exact),
    "tool_demo_lesson": lambda raw: reflect.tool_demo_lesson(raw, Task("t", "What is 2+2?", "4"), exact),
    "plain_math": reflect.plain_math,
}


@pytest.mark.parametrize("parser", sorted(PARSERS))
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_parsers_take_linear_time_on_hostile_replies(parser: str, kind: str) -> None:
    start = time.perf_counter()
    PARSERS[parser](HOSTILE[kind])
    assert time.perf_counter() - start < 1.0


def test_plain_math_still_renders_display_math() -> None:
    assert reflect.plain_math("so \\[ 2 \\times 3 \\] and \\[\\frac{1}{2}\\]") == "so 2 × 3; and 1/2;"


# ---------------------------------------------------------------- grouping and the prompt

def test_order_groups_puts_mixed_first_and_drops_all_correct() -> None:
    rollouts = [ro("w1", "wrong", 0.0), ro("w2", "wrong", 0.0),
                ro("c1", "right", 1.0), ro("c2", "right", 1.0),
                ro("p1", "partial", 0.5), ro("p2", "partial", 0.0),
                ro("m1", "mixed", 0.0), ro("m2", "mixed", 1.0)]
    groups = order_groups(rollouts)
    assert [g[0].task_id for g in groups] == ["mixed", "partial", "wrong"]  # widest spread first
    assert [r.id for r in groups[0]] == ["m2", "m1"]  # best attempt first
    assert order_groups([ro("c", "right", 1.0)]) == []


def prompt_fixture(lessons: list[Lesson]) -> str:
    tasks = {"t1": Task("t1", "How many r in berry?", "2"), "t2": Task("t2", "How many s in grass?", "3")}
    rollouts = [ro("a", "t1", 1.0, "b-e-r-r-y: Answer: 2"), ro("b", "t1", 0.0, "Answer: 3"),
                ro("c", "t2", 0.0, "Answer: 1"), ro("d", "t2", 0.0, "Answer: 5")]
    messages = build_prompt("Count the letters.", lessons, order_groups(rollouts), tasks)
    assert [m["role"] for m in messages] == ["system", "user"]
    return messages[1]["content"]


def test_build_prompt_shows_lessons_answers_and_a_contrast() -> None:
    text = prompt_fixture([Lesson("L1", GOOD, "s"), Lesson("L4", GOOD2, "s")])
    assert "Count the letters." in text
    assert f"L1. {GOOD}" in text and f"L4. {GOOD2}" in text
    assert "Correct answer: 2" in text and "Correct answer: 3" in text
    assert "b-e-r-r-y: Answer: 2" in text and "Answer: 3" in text  # the right and the wrong attempt of t1
    assert text.index("b-e-r-r-y") < text.index("How many s in grass?")  # the mixed group comes first
    example = json.loads(text[text.rindex('{"edits"'):])
    assert {e["op"] for e in example["edits"]} == {"add", "edit", "delete"}
    assert {e.get("id") for e in example["edits"]} >= {"L1", "L4"}


def test_build_prompt_without_lessons_offers_only_adds() -> None:
    text = prompt_fixture([])
    assert "(none yet)" in text
    example = json.loads(text[text.rindex('{"edits"'):])
    assert {e["op"] for e in example["edits"]} == {"add"}
    assert '"edit"' not in text and '"delete"' not in text


def test_demo_lesson_is_checked_and_cleaned():
    from secondnature.rewards import number
    task = Task("t1", "How many apples are in a box of two apples?", "2")
    lesson, why = reflect.demo_lesson("Sure! Here is the solution:\n1. apples: 2\nAnswer: 2", task, number)
    assert not why and lesson == ("Worked example. Question: How many apples are in a box of two apples? "
                                  "Good answer: 1. apples: 2 Answer: 2")
    assert reflect.demo_lesson("```\napples: 3\nAnswer: 3\n```", task, number)[1].startswith("the checker rejects")
    assert reflect.demo_lesson("", task, number) == ("", "empty demonstration")
    assert "too long" in reflect.demo_lesson("word " * 200 + "Answer: 2", task, number)[1]


def test_examples_keep_the_math_and_drop_the_latex_markup():
    from secondnature.rewards import number
    working = (r"Twice the age less 5: \[ 45 = 2 \times \text{age} - 5 \] so \[ \text{age} = \frac{45 + 5}{2} \] "
               r"and \(x\) is \$25, 20\% of \dfrac{250}{2}, (12) apples. Answer: \boxed{25}")
    plain = ("Twice the age less 5: 45 = 2 × age - 5; so age = (45 + 5)/2; and x is $25, 20% of 250/2, (12) apples. "
             "Answer: 25")
    assert reflect.plain_math(working) == plain
    assert reflect.plain_math(r"\unknown{x} stays") == r"\unknown{x} stays"  # what is not understood is kept
    task = Task("t1", "How old is the son?", "25")
    assert reflect.demo_lesson(working, task, number)[0].endswith(f"Good answer: {plain}")
    ok, bad = (Rollout(f"r{v}", "t1", ({"role": "user", "content": "q"}, {"role": "assistant", "content": working}),
                       working, Score(v, ""), (), "m", 0, 0) for v in (1.0, 0.0))
    assert example_from([[ok, bad]], {"t1": task}).endswith(f"Good answer: {plain}")


def test_answer_tally_shows_a_skew_no_single_attempt_shows() -> None:
    from secondnature.evidence import answer_tally
    tasks = {f"t{i}": Task(f"t{i}", f"How many r in word {i}?", "1" if i % 4 else "2") for i in range(8)}
    batch = [ro(f"r{i}", f"t{i}", 0.0, "I count. Answer: 2") for i in range(8)]
    line = answer_tally(batch, tasks)
    assert "final answers were: 2 (8 times)" in line and "correct answers were: 1 (6 times), 2 (2 times)" in line
    text = build_prompt("Count.", [], order_groups(batch), tasks, batch)[1]["content"]
    assert line.strip() in text
    # free-form answers (many distinct values) are not labels: no tally
    free = {f"t{i}": Task(f"t{i}", "Sort the words.", f"apple pear {i}") for i in range(8)}
    assert answer_tally([ro(f"r{i}", f"t{i}", 0.0, "x") for i in range(8)], free) == ""
    assert answer_tally([], tasks) == ""


def test_parse_guide_takes_the_guide_and_applies_the_guards():
    from secondnature.reflect import parse_guide
    text, why = parse_guide("The wrong ones skipped letters.\n<guide>Spell the word letter by letter, "
                              "then count each match.</guide>")
    assert text == "Spell the word letter by letter, then count each match." and not why
    assert parse_guide("<guide>Spell each letter out, one per line, then count them")[0]  # cut off: still a guide
    assert "no <guide>" in parse_guide('{"edits": []}')[1]
    steps = " ".join(f"{i}. Count the items of kind {i} one at a time and write each count down." for i in range(1, 9))
    text = parse_guide(f"<guide>Follow these steps: {steps}</guide>")[0]  # cut at the limit, not after an item's number
    assert text.endswith("write each count down.") and len(text.split()) <= reflect.REWRITE_WORDS + 10
    # without the tags: the first plain paragraph, cut at a sentence end, not a numbered lesson heading
    untagged = ("**Lesson 1: Read it**\n\nTo solve a problem like this, write the word out letter by letter. "
                "Then count each match one at a time and say the total. " + "Check again. " * 40)
    text, why = parse_guide(untagged)
    assert text.startswith("To solve a problem like this") and text.endswith(".") and len(text.split()) <= 80
    assert not why
    listed = ("To solve this problem, list the objects step by step:\n\n1. Name every object on its own line.\n"
              "2. Write how many of each there are.\n\n3. Add the numbers up one by one.\n\nThat is all.")
    text, _ = parse_guide(listed)
    assert text.endswith("Add the numbers up one by one.") and "Name every object" in text
    # a tagged guide over the word limit keeps its first sentences instead of being lost
    long = "<guide>List every item on its own line. Write how many of each there are. " + "Then check it. " * 60 + "</guide>"
    text, why = parse_guide(long)
    assert not why and text.startswith("List every item") and text.endswith(".") and len(text.split()) <= 80
    assert "filler" in parse_guide("<guide>Sure! Please provide the inputs and I will help.</guide>")[1]
    task = Task("t", "How many times does the letter 'r' appear in 'strawberry'?", "3")
    assert "copies" in parse_guide("<guide>Count the letters in 'strawberry' one at a time always.</guide>",
                                     [task])[1]


def test_a_trajectory_is_shown_step_by_step_with_long_tool_output_elided():
    msgs = ({"role": "system", "content": "s"}, {"role": "user", "content": "q"},
            {"role": "assistant", "content": "```python\nprint(list(range(1000)))\n```"},
            {"role": "user", "content": "Tool output:\n" + "1, " * 2000},
            {"role": "assistant", "content": "Answer: 3"})
    r = Rollout("r1", "t", msgs, "Answer: 3", Score(0.0, "expected 4"), (), "m", 0, 0)
    from secondnature.evidence import render_group
    text = render_group(1, Task("t", "q", "4"), [r])
    assert "Step 1, the assistant:" in text and "Step 1, the tool answered:" in text and "Step 2, the assistant:" in text
    assert "characters of tool output elided" in text and len(text) < 1500


def test_the_reflection_prompt_never_exceeds_the_window():
    from secondnature.evidence import fit_groups
    groups = [[Rollout(f"r{i}", f"t{i}", (), "word " * 200, Score(0.0), (), "m", 0, 0)] for i in range(6)]
    tasks = {f"t{i}": Task(f"t{i}", "question " * 50, "1") for i in range(6)}

    def count(text: str) -> int:
        return len(text.split())

    def build(gs):
        return build_prompt("Answer.", [], gs, tasks)
    full = sum(count(m["content"]) for m in build(groups))
    msgs, kept = fit_groups(build, groups, count, full // 2)
    assert 1 <= kept < 6 and sum(count(m["content"]) for m in msgs) <= full // 2
    assert fit_groups(build, groups, count, 10)[1] == 1  # one group at least, even if it overflows
    assert fit_groups(build, groups, count, 10 ** 6)[1] == 6


def test_a_steps_prompts_share_their_opening_and_the_groups_that_fit():
    from secondnature.evidence import fit_groups
    groups = [[Rollout(f"r{i}", f"t{i}", (), "word " * 200, Score(0.0), (), "m", 0, 0)] for i in range(6)]
    tasks = {f"t{i}": Task(f"t{i}", "question " * 50, "1") for i in range(6)}

    def count(text: str) -> int:
        return len(text.split())
    full = sum(count(m["content"]) for m in build_prompt("Answer.", [], groups, tasks))
    msgs, kept = fit_groups(lambda gs: build_prompt("Answer.", [], gs, tasks), groups, count, full // 2)
    assert 1 <= kept < 6 and sum(count(m["content"]) for m in msgs) <= full // 2
    opening = evidence("Answer.", [], groups[:kept], tasks, [], (), 0)  # the groups kept, no more
    users = [msgs[-1]["content"], reflect.rewrite_prompt("Answer.", [], groups[:kept], tasks)[-1]["content"]]
    assert all(u.startswith(opening) for u in users) and users[0][len(opening):] != users[1][len(opening):]


def test_headings_are_not_lessons_and_bold_titles_are_dropped():
    raw = """### Lessons
1. **Set Up the Equations:**
   - **Better Lesson:** "After solving, check the result by putting the values back into the equations."
2. Provide a clear, concise reasoning step-by-step:
3. **Clarify Instructions**: Always restate what the question asks for before you compute anything."""
    edits, notes = parse(raw, set())
    assert [e.text for e in edits] == [
        "After solving, check the result by putting the values back into the equations.",
        "Always restate what the question asks for before you compute anything."]
    assert any("a heading, not a lesson" in n for n in notes)


def test_a_lesson_wholly_in_bold_loses_the_markup_and_is_no_new_lesson():
    # seen in the demo: the bold copy of a kept lesson passed the gate as a second lesson
    from secondnature.propose import apply
    kept = "Check if the word contains the letter before writing the answer."
    edits, _ = parse(f'[{{"op": "add", "text": "**{kept}**"}}]', {"L1"})
    assert [e.text for e in edits] == [kept]
    assert apply(step_with([Lesson("L1", kept, "letters")]), edits[0]) == (None, "repeats L1 in nearly the same words")
    assert parse("- Always **count twice** and **check** the total.", set())[0][0].text == (
        "Always **count twice** and **check** the total.")  # emphasis inside a lesson is left as written
