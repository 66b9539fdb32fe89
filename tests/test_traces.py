"""`import traces`: an application's own logs (OpenAI request/response JSONL, OpenTelemetry GenAI spans, Langfuse
trace exports) become calls and feedback in the store, once each, redacted, or the file is refused whole."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from secondnature import traces
from secondnature.cli import main, ui
from secondnature.store import LessonStore
from secondnature.store import traffic as db
from secondnature.traces import TraceFileError, detect_format, import_traces
from secondnature.types import Call

DATA = Path(__file__).parent / "data" / "traces"
KEY = "sk-test-0000000000000000aaaa"  # shaped like an API key: redact.KEY_SHAPES must catch it


@pytest.fixture
def store(store_at: Path | str) -> LessonStore:
    """On both backends: an SQLite file and a PostgreSQL database."""
    return LessonStore(store_at)


def asking(store: LessonStore, start: str) -> Call:
    """The stored call whose last user message starts with `start`."""
    (found,) = [c for c in db.calls(store) if [m["content"] for m in c.messages
                                               if m["role"] == "user"][-1].startswith(start)]
    return found


def values(store: LessonStore, call) -> list[tuple]:
    return [(f.value, f.comment, f.demonstration, f.source) for f in db.feedback(store, call)]


def everything(store: LessonStore) -> str:
    """All that the store holds of the traffic, as one text."""
    calls = db.calls(store)
    return json.dumps([[c.messages, c.params, c.reply, c.tool_calls] for c in calls]
                      + [values(store, c) for c in calls])


def write(tmp_path: Path, name: str, rows: list) -> Path:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------ the three formats

def test_openai_log_becomes_calls_with_replies_tokens_and_feedback(store: LessonStore) -> None:
    r = import_traces(store, DATA / "openai.jsonl")
    assert (r.format, r.added, r.present, r.feedback) == ("openai", 4, 0, 3)
    assert r.skipped == {"failed calls (an error and no response)": 1}
    assert r.scopes == {"support": {"added": 2, "present": 0, "feedback": 2},
                        "default": {"added": 2, "present": 0, "feedback": 1}}
    reset = asking(store, "My key [reda")
    assert reset.messages == ({"role": "system", "content": "You are a support agent."},
                              {"role": "user", "content": "My key [redacted key] stopped working. How do I reset my "
                                                          "password?"})
    assert reset.reply == "Open Settings, then Security, then Reset password."
    assert (reset.model, reset.prompt_tokens, reset.completion_tokens) == ("gpt-4o-mini-2024-07-18", 31, 11)
    assert (reset.scope, reset.conversation, reset.status, reset.source) == ("support", "conv-1", "done", "import:openai")
    assert reset.params == {"model": "gpt-4o-mini", "temperature": 0.2}
    assert reset.created_at == "2025-01-01T12:00:00+00:00"
    assert reset.id.startswith("chatcmpl-sn") and len(reset.id) == len(db.new_call_id())
    assert values(store, reset) == [(1.0, "clear and short", "", "import")]
    weather = asking(store, "What is the w")
    assert weather.reply == "" and weather.tool_calls == (
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},)
    assert weather.params["tools"][0]["function"]["name"] == "get_weather"
    assert values(store, weather) == [(0.25, "should have asked which Paris", "", "import")]  # from its metadata
    cat = asking(store, "Translate 'c")
    assert (cat.reply, cat.conversation, cat.scope) == ("chien", "conv-2", "default")
    assert values(store, cat) == [(0.0, "", "chat", "import")]
    sums = asking(store, "2+2?")  # the fine-tuning chat format: the last assistant message is the reply
    assert sums.messages == ({"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "2+2?"})
    assert sums.reply == "4" and values(store, sums) == []


def test_otlp_export_chat_spans_become_calls_and_other_spans_are_counted(store: LessonStore) -> None:
    r = import_traces(store, DATA / "otel.json")
    assert (r.format, r.added, r.feedback) == ("otel", 2, 1)
    assert r.skipped == {
        "execute_tool spans (not a model call)": 1,
        "spans without gen_ai.input.messages and gen_ai.output.messages (not chat spans, or content capture off)": 1,
        "message parts of type reasoning (a replay cannot send them back)": 1}
    rome = asking(store, "Book Rome, c")
    assert rome.messages == ({"role": "system", "content": "You plan trips."},
                             {"role": "user", "content": "Book Rome, card token [redacted key]"})
    assert (rome.reply, rome.model, rome.scope) == ("Rome is booked for May.", "gpt-4o-2024-08-06", "Travel-Agent")
    assert (rome.conversation, rome.prompt_tokens, rome.completion_tokens) == ("sess-42", 52, 9)
    assert (rome.latency_s, rome.created_at, rome.source) == (1.5, "2025-01-01T12:00:00+00:00", "import:otel")
    assert rome.params == {"model": "gpt-4o", "temperature": 0.5}
    assert values(store, rome) == [(0.9, "helpfulness: good; booked what was asked", "", "import")]
    paris = asking(store, "Weather in P")
    assert paris.messages == (
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_VS", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_VS", "content": "rainy, 57°F"})
    assert paris.reply == "It is rainy, 57°F."  # the reasoning part is left out
    assert (paris.scope, paris.conversation, paris.latency_s) == ("gpt-4o", "sess-42", 0.4)  # no agent: the model


def test_flat_spans_with_structured_attributes(store: LessonStore) -> None:
    r = import_traces(store, DATA / "otel_flat.jsonl")
    assert (r.format, r.added) == ("otel", 1)
    (c,) = db.calls(store)
    assert (c.messages, c.reply) == (({"role": "user", "content": "Hi there"},), "Hello!")
    assert (c.prompt_tokens, c.completion_tokens, c.latency_s) == (3, 2, 2.0)
    assert (c.scope, c.created_at) == ("llama-3.1-8b", "2025-01-01T12:00:00+00:00")


def test_langfuse_traces_with_numeric_boolean_and_categorical_scores(store: LessonStore) -> None:
    r = import_traces(store, DATA / "langfuse.jsonl")
    assert (r.format, r.added, r.feedback) == ("langfuse", 3, 4)
    assert r.skipped == {"Langfuse scores given only as ids (export traces with their scores to bring them in)": 1}
    order = asking(store, "Where is my ")
    assert order.messages == ({"role": "system", "content": "Be kind."},
                              {"role": "user", "content": "Where is my order #1234?"})
    assert (order.reply, order.scope, order.conversation, order.model) == ("It ships tomorrow.", "support-bot",
                                                                            "sess-lf-1", "gpt-4o-mini")
    assert (order.latency_s, order.created_at, order.source) == (1.25, "2025-01-02T09:59:58+00:00", "import:langfuse")
    assert values(store, order) == [(0.8, "helpfulness: 0.8 (useful)", "", "import"),
                                    (1.0, "resolved: true", "", "import"),
                                    (None, "tone: polite (a bit curt)", "", "import")]  # a label is a comment
    cancel = asking(store, "Cancel my su")  # a string input is the user's message
    assert cancel.reply == "Done: your subscription is cancelled."
    assert values(store, cancel) == [(0.0, "resolved: false", "", "import")]
    summary = asking(store, "Summarize: a")  # a decorated function's trace: its GENERATION holds the model call
    assert (summary.reply, summary.model, summary.prompt_tokens, summary.completion_tokens) == (
        "A short text.", "gpt-4o", 100, 12)
    assert summary.scope == "summarize" and values(store, summary) == []


def test_a_score_off_0_1_is_refused_unless_a_range_rescales_it(store: LessonStore) -> None:
    with pytest.raises(TraceFileError) as e:
        import_traces(store, DATA / "langfuse_rating.jsonl")
    assert 'langfuse_rating.jsonl line 1: field "scores[0].value" is 4, outside [0, 1]' in str(e.value)
    assert "--score-range LO:HI" in str(e.value)
    assert db.calls(store) == []
    r = import_traces(store, DATA / "langfuse_rating.jsonl", score_range=(1, 5))
    (c,) = db.calls(store)
    assert r.feedback == 2 and [v[:2] for v in values(store, c)] == [(0.75, "rating: 4 (good)"), (0.0, "stars: 1")]
    with pytest.raises(ValueError, match="LO must be below HI"):
        import_traces(store, DATA / "langfuse_rating.jsonl", score_range=(5, 1))


def test_detects_each_format_from_its_first_record(tmp_path: Path) -> None:
    assert [detect_format(DATA / f) for f in ("openai.jsonl", "otel.json", "otel_flat.jsonl", "langfuse.jsonl")] == [
        "openai", "otel", "otel", "langfuse"]
    with pytest.raises(TraceFileError, match=r"line 1: cannot tell the format .*keys: prompt, answer.* --format"):
        detect_format(write(tmp_path, "task.jsonl", [{"prompt": "2+2", "answer": "4"}]))


# ------------------------------------------------------------------ once each, redacted

@pytest.mark.parametrize("name", ["openai.jsonl", "otel.json", "langfuse.jsonl"])
def test_importing_the_same_file_twice_adds_nothing(store: LessonStore, name: str) -> None:
    first = import_traces(store, DATA / name)
    before = everything(store)
    again = import_traces(store, DATA / name)
    assert (again.added, again.present, again.feedback) == (0, first.added, 0)
    assert everything(store) == before
    assert sum(len(db.feedback(store, c)) for c in db.calls(store)) == first.feedback


def test_a_known_call_still_gets_the_feedback_it_lacks(tmp_path: Path, store: LessonStore) -> None:
    """An import stopped between its calls and their feedback, or a newer export with a score added since: the
    verdicts not yet recorded come in, the recorded ones do not come twice."""
    other = LessonStore(tmp_path / "other.db")
    import_traces(other, DATA / "langfuse.jsonl")
    db.add_calls(store, db.calls(other))  # the calls without their feedback
    r = import_traces(store, DATA / "langfuse.jsonl")
    assert (r.added, r.present, r.feedback) == (0, 3, 4)
    rows = [json.loads(line) for line in (DATA / "langfuse.jsonl").read_text().splitlines()]
    rows[1]["scores"].append({"name": "speed", "value": 0.5, "dataType": "NUMERIC"})
    r = import_traces(store, write(tmp_path, "newer.jsonl", rows))
    assert (r.added, r.feedback) == (0, 1)
    assert [v[:2] for v in values(store, asking(store, "Cancel my su"))] == [(0.0, "resolved: false"),
                                                                              (0.5, "speed: 0.5")]


def test_the_same_response_logged_in_two_formats_is_one_call(tmp_path: Path, store: LessonStore) -> None:
    openai = write(tmp_path, "o.jsonl", [{"request": {"messages": [{"role": "user", "content": "hi"}]},
                                          "response": {"id": "chatcmpl-O1", "choices": [{"message": {
                                              "role": "assistant", "content": "hello"}}]}}])
    import_traces(store, DATA / "otel.json")
    r = import_traces(store, openai)
    assert (r.added, r.present) == (0, 1)  # otel.json's first span has gen_ai.response.id chatcmpl-O1


def test_every_text_is_redacted_before_it_is_stored(tmp_path: Path, store: LessonStore) -> None:
    path = write(tmp_path, "keys.jsonl", [
        {"request": {"model": "m", "user": KEY, "messages": [{"role": "system", "content": f"key={KEY}"},
                                                             {"role": "user", "content": [{"type": "text",
                                                                                           "text": f"use {KEY}"}]}]},
         "response": {"id": "r1", "choices": [{"message": {"role": "assistant", "content": f"Your key is {KEY}.",
                                                           "tool_calls": [{"id": "c", "type": "function", "function": {
                                                               "name": "login", "arguments": json.dumps({"k": KEY})}}]}}]},
         "comment": f"leaked {KEY}", "demonstration": f"never repeat {KEY}"}])
    assert import_traces(store, path).added == 1
    stored = everything(store)
    assert KEY not in stored and KEY[:12] not in stored
    assert stored.count("[redacted key]") == 7
    import_traces(store, DATA / "otel.json")
    assert KEY not in everything(store)


# ------------------------------------------------------------------ a bad file is refused whole

def test_a_bad_file_names_each_line_field_and_fix_and_nothing_is_written(store: LessonStore) -> None:
    with pytest.raises(TraceFileError) as e:
        import_traces(store, DATA / "openai_bad.jsonl")
    lines = str(e.value).splitlines()
    assert [x.split(":")[0].split()[-1] for x in lines] == ["2", "3", "4", "5", "6"]  # line 1 is fine
    assert "line 2: not valid JSON (Expecting ',' delimiter at column 52)" in lines[0]
    assert 'line 3: field "request.messages" is missing' in lines[1]
    assert 'line 4: field "score" is 7, outside [0, 1] — pass --score-range' in lines[2]
    assert 'line 5: field "messages[0].role" must be one of system, developer, user, assistant' in lines[3]
    assert 'line 6: field "messages" ends with a user message and there is no "completion" — end' in lines[4]
    assert db.calls(store) == []


def test_a_bad_span_is_named_by_its_place_and_the_good_ones_wait(store: LessonStore) -> None:
    with pytest.raises(TraceFileError) as e:
        import_traces(store, DATA / "otel_bad.json")
    assert str(e.value) == (f"{DATA / 'otel_bad.json'} line 1 resourceSpans[0].scopeSpans[0].spans[1]: field "
                            '"gen_ai.input.messages" is not valid JSON (Expecting value at column 29) — it should be a '
                            "JSON array of messages with role and parts")
    assert db.calls(store) == []


@pytest.mark.parametrize("content, expected", [
    ("", "the file is empty — write one call per line"),
    ("\n  \n", "the file is empty"),
    ("hello world\n", "line 1: not valid JSON"),
    ("[1, 2]\n", "line 1 item 0: expected a JSON object, got 1"),
    ('{"messages": [{"role": "user", "content": "\\ud800"}], "completion": "x"}\n',
     'line 1: field "messages[0]" is not valid Unicode'),
    ('{"request": {"messages": []}, "response": {}}\n', 'field "request.messages" must be a non-empty list'),
    ('{"request": {"messages": [{"role": "user", "content": "x"}]}, "response": {"choices": []}}\n',
     'field "response" must be the chat completion object'),
    ('{"messages": [{"role": "user", "content": "x"}], "completion": "y", "score": "high"}\n',
     'field "score" must be a number in [0, 1] or true/false, got "high"'),
    ('{"id": "t", "input": "q", "output": "a", "scores": [{"name": "ok", "value": 2, "dataType": "BOOLEAN"}]}\n',
     'field "scores[0].value" is 2; a BOOLEAN score is 1 or 0'),
    ('{"id": "t", "input": {"args": []}, "output": "a"}\n', 'field "input" must be the chat messages'),
])
def test_malformed_files_are_refused_with_the_fix(tmp_path: Path, store: LessonStore, content: str,
                                                  expected: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(content, encoding="utf-8", errors="surrogatepass")
    with pytest.raises(TraceFileError) as e:
        import_traces(store, path)
    assert expected in str(e.value) and str(path) in str(e.value)
    assert db.calls(store) == []


def test_at_most_ten_problems_are_listed(tmp_path: Path, store: LessonStore) -> None:
    path = write(tmp_path, "many.jsonl", [{"messages": [{"role": "user", "content": "q"}]}] * 25)
    with pytest.raises(TraceFileError) as e:
        import_traces(store, path)
    lines = str(e.value).splitlines()
    assert len(lines) == 11 and lines[-1] == "... and 15 more" and "line 10:" in lines[9]


def test_a_wrong_format_or_scope_is_refused(store: LessonStore, tmp_path: Path) -> None:
    with pytest.raises(TraceFileError, match=r'line 1: field "attributes" is missing .*is --format right'):
        import_traces(store, DATA / "openai.jsonl", format="otel")
    with pytest.raises(TraceFileError, match=r'line 1: field "id" must be the trace'):
        import_traces(store, DATA / "openai.jsonl", format="langfuse")
    with pytest.raises(ValueError, match="unknown trace format"):
        import_traces(store, DATA / "openai.jsonl", format="csv")
    with pytest.raises(ValueError, match="letters, digits"):
        import_traces(store, DATA / "openai.jsonl", scope="has space")
    with pytest.raises(TraceFileError, match="no such file"):
        import_traces(store, tmp_path / "missing.jsonl")
    assert db.calls(store) == []


def test_an_oversized_line_is_refused_without_reading_it_whole(tmp_path: Path, store: LessonStore,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(traces, "MAX_RECORD", 200)
    ok = {"messages": [{"role": "user", "content": "q"}], "completion": "a"}
    path = write(tmp_path, "long.jsonl", [ok, {**ok, "completion": "x" * 5000}, ok])
    with pytest.raises(TraceFileError) as e:
        import_traces(store, path)
    assert str(e.value) == f"{path} line 2: is longer than 200 bytes — split the record or leave out its media"


def test_a_long_log_streams_in_batches_with_scopes_and_repeats(tmp_path: Path, store: LessonStore) -> None:
    rows = [{"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"a{i}"}],
             "score": i % 2, "scope": f"s{i % 3}"} for i in range(700)]
    r = import_traces(store, write(tmp_path, "long.jsonl", rows + rows[:5]))
    assert (r.added, r.feedback) == (700, 700)
    assert r.skipped == {"records repeated in the file (the same call id)": 5}
    assert {s: n["added"] for s, n in r.scopes.items()} == {"s0": 234, "s1": 233, "s2": 233}
    assert len(db.calls(store)) == 700
    assert import_traces(store, tmp_path / "long.jsonl", scope="all-of-it").added == 0  # ids do not depend on scope


def test_scope_flag_puts_every_call_in_one_scope(store: LessonStore) -> None:
    r = import_traces(store, DATA / "openai.jsonl", scope="helpdesk")
    assert set(r.scopes) == {"helpdesk"} and {c.scope for c in db.calls(store)} == {"helpdesk"}


# ------------------------------------------------------------------ the command line

@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.setattr(ui, "out", Console(width=80))
    monkeypatch.setattr(ui, "err", Console(stderr=True, width=80))
    store_path = str(tmp_path / "cli.db")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--store", store_path, *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return run


def test_cli_import_prints_a_table_per_scope_and_json(cli) -> None:
    code, out, _ = cli("import", "traces", str(DATA / "langfuse.jsonl"))
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["support-bot"] == ["2", "0", "4"] and rows["summarize"] == ["1", "0", "0"]
    assert rows["all"] == ["3", "0", "4"]
    assert "left out 1: Langfuse scores given only as ids" in out
    code, out, _ = cli("import", "traces", str(DATA / "langfuse.jsonl"), "--json")
    data = json.loads(out)
    assert (code, data["format"], data["added"], data["present"], data["feedback"]) == (0, "langfuse", 0, 3, 0)
    assert data["scopes"]["support-bot"] == {"added": 0, "present": 2, "feedback": 0}


def test_cli_import_options_and_errors(cli) -> None:
    code, _, err = cli("import", "traces", str(DATA / "langfuse_rating.jsonl"))
    assert code == 2 and "--score-range LO:HI" in err and "scores[0].value" in err
    code, out, _ = cli("import", "traces", str(DATA / "langfuse_rating.jsonl"), "--score-range", "1:5",
                       "--scope", "ratings", "--format", "langfuse", "--json")
    assert code == 0 and json.loads(out)["scopes"] == {"ratings": {"added": 1, "present": 0, "feedback": 2}}
    with pytest.raises(SystemExit):
        cli("import", "traces", "x.jsonl", "--score-range", "5")
    code, _, err = cli("import", "traces", str(DATA / "openai_bad.jsonl"))
    assert code == 2 and "line 6" in err
    code, out, _ = cli("calls", "--json")
    assert [c["scope"] for c in json.loads(out)] == ["ratings"]


def test_cli_calls_lists_newest_first_at_80_columns(cli, tmp_path: Path) -> None:
    long_q = "Please explain in detail " + "why the sky is blue " * 10
    path = write(tmp_path, "t.jsonl", [
        {"messages": [{"role": "user", "content": long_q}], "completion": "Rayleigh scattering. " * 10,
         "score": 0.5, "scope": "science", "created_at": "2025-03-01T00:00:00Z"},
        {"messages": [{"role": "user", "content": "hi"}], "completion": "hello", "scope": "chat",
         "created_at": "2025-03-02T00:00:00Z"}])
    assert cli("import", "traces", str(path))[0] == 0
    code, out, _ = cli("calls")
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 80
    assert out.index("hello") < out.index("Rayleigh")  # newest first
    assert "0.50" in out and "1 fb" in out
    assert out.count("blue") == 1 and out.count("Rayleigh") == 3  # the first 60 characters of each
    code, out, _ = cli("calls", "--json", "--scope", "science")
    (c,) = json.loads(out)
    assert (c["scope"], c["value"], c["feedback"], c["user"]) == ("science", 0.5, 1, long_q)
    assert c["id"].startswith("chatcmpl-sn") and c["reply"].startswith("Rayleigh")
    code, out, _ = cli("calls", "--limit", "1", "--json")
    assert [x["scope"] for x in json.loads(out)] == ["chat"]
    code, out, _ = cli("--store", str(tmp_path / "empty.db"), "calls")
    assert "no calls yet" in out
