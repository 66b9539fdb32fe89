"""The three log formats, each a function from one record to a call with its feedback, or to the reason the record
is left out (a span that is not a model call, a call that failed). Shapes, as their owners define them:

- OpenAI: a chat completions request body beside the chat completion it got (`request`, `response`; a Batch API
  line's `body` is opened), with optional `score`, `comment`, `demonstration`, `scope`, `conversation` on the line or
  in its `metadata`; or the fine-tuning chat format, `{"messages": [...]}` ending with the assistant's reply (or with
  `"completion"` beside it).
- OpenTelemetry GenAI spans (semantic conventions for generative AI): `gen_ai.input.messages`,
  `gen_ai.output.messages` and `gen_ai.system_instructions` hold messages as `{role, parts}`; text and tool-call parts
  are kept, others (reasoning, media) are left out because a replay cannot send them back. A
  `gen_ai.evaluation.result` event on the span is feedback.
- Langfuse: a trace as its API returns it (`id`, `name`, `input`, `output`, `sessionId`, `metadata`, `scores`
  [{name, value, stringValue, dataType, comment}], and `observations`, whose last GENERATION is used when the trace's
  own input and output are a decorated function's arguments rather than chat messages)."""
from __future__ import annotations

import json
from typing import Any

from ..types import Call, Feedback
from .fields import (
    Bad,
    brief,
    clean,
    count,
    epoch,
    loads,
    messages,
    record_key,
    scope_name,
    stable_id,
    text,
    to_value,
    tool_call,
    tool_calls,
    verdict,
    when,
)

EXAMPLES = {"openai": '{"request": {"messages": [...]}, "response": {"choices": [...]}, "score": 1}',
            "otel": 'a span with "attributes" holding gen_ai.input.messages and gen_ai.output.messages',
            "langfuse": '{"id": ..., "input": [...messages], "output": ..., "scores": [...]}'}
CHAT_OPS = ("chat", "text_completion", "generate_content")
OTEL_PARAMS = {"gen_ai.request.temperature": "temperature", "gen_ai.request.max_tokens": "max_tokens",
               "gen_ai.request.top_p": "top_p", "gen_ai.request.seed": "seed", "gen_ai.request.stop_sequences": "stop",
               "gen_ai.request.frequency_penalty": "frequency_penalty",
               "gen_ai.request.presence_penalty": "presence_penalty"}
Range = tuple[float, float] | None
Parsed = tuple[Call, list[Feedback], list[str]]  # a call, its feedback, and what of the record was left out (why)


def from_openai(rec: dict, scope: str | None, score_range: Range) -> Parsed | str:
    meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}

    def pick(key: str) -> Any:  # the line's own field, else its metadata's (stored completions keep theirs there)
        return rec.get(key, meta.get(key))

    if "request" in rec or "response" in rec:
        req, resp = rec.get("request"), rec.get("response")
        req = req.get("body", req) if isinstance(req, dict) and "messages" not in req else req
        resp = resp.get("body", resp) if isinstance(resp, dict) and "choices" not in resp else resp
        if resp is None and rec.get("error"):
            return "failed calls (an error and no response)"
        if not isinstance(req, dict):
            raise Bad("request", f'must be the chat completions request body {{"messages": [...], "model": ...}}, '
                                 f"got {brief(req)}")
        msgs = messages(req.get("messages"), "request.messages")
        choices = resp.get("choices") if isinstance(resp, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict) \
                or not isinstance(choices[0].get("message"), dict):
            raise Bad("response", 'must be the chat completion object, with "choices": [{"message": {...}}]')
        msg, usage = choices[0]["message"], resp.get("usage") if isinstance(resp.get("usage"), dict) else {}
        reply = text(msg.get("content"), "response.choices[0].message.content")
        calls = tool_calls(msg.get("tool_calls"), "response.choices[0].message.tool_calls")
        params = clean({k: v for k, v in req.items() if k not in ("messages", "metadata")}, "request")
        model, rid, created = resp.get("model") or req.get("model"), resp.get("id"), resp.get("created")
        tokens = (count(usage.get("prompt_tokens")), count(usage.get("completion_tokens")))
    elif "messages" in rec:
        msgs = messages(rec["messages"], "messages")
        if "completion" in rec:
            reply, calls = text(rec["completion"], "completion"), []
        elif msgs[-1]["role"] == "assistant" and len(msgs) > 1:  # the fine-tuning chat format
            last = msgs.pop()
            reply, calls = text(last.get("content"), "messages[-1].content"), last.get("tool_calls", [])
        else:
            raise Bad("messages", f'ends with a {msgs[-1]["role"]} message and there is no "completion" — end '
                                  '"messages" with the assistant\'s reply, or add "completion": "..."')
        params = clean({k: rec[k] for k in ("model", "tools") if k in rec}, "tools")
        model, rid, created, tokens = rec.get("model"), rec.get("id"), rec.get("created"), (0, 0)
    else:
        raise Bad("request", f"is missing — each line needs {EXAMPLES['openai']}, or "
                             '{"messages": [...], "completion": "..."}')
    cid = stable_id(f"response:{rid}" if isinstance(rid, str) and rid else record_key(rec))
    conversation = pick("conversation")
    call = Call(cid, scope_name(scope, pick("scope")), str(model or ""), tuple(msgs), params, reply, tuple(calls),
                "done", conversation=str(conversation) if conversation is not None else "",
                prompt_tokens=tokens[0], completion_tokens=tokens[1], source="import:openai",
                created_at=when(created if created is not None else pick("created_at")))
    return call, verdict(cid, to_value(pick("score"), "score", score_range), pick("comment"), pick("demonstration"),
                         ""), []


def _any(v: Any) -> Any:
    """An OTLP/JSON AnyValue ({"stringValue": ...}, {"intValue": "3"}, {"arrayValue": {"values": [...]}}, ...) as
    plain JSON."""
    if not isinstance(v, dict):
        return v
    for key in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
        if key in v:
            return v[key]
    if "intValue" in v:
        return int(v["intValue"]) if str(v["intValue"]).lstrip("-").isdigit() else v["intValue"]
    values = (v.get("arrayValue") or v.get("kvlistValue") or {}).get("values")
    if "arrayValue" in v:
        return [_any(x) for x in values or []]
    if "kvlistValue" in v:
        return {kv.get("key"): _any(kv.get("value")) for kv in values or [] if isinstance(kv, dict)}
    return None


def _attributes(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and all(isinstance(a, dict) and "key" in a for a in value):
        return {a["key"]: _any(a.get("value")) for a in value}
    raise Bad(where, 'must be an object, or an OTLP list of {"key": ..., "value": {"stringValue": ...}}')


def _structured(value: Any, where: str) -> list:
    """An attribute the conventions allow as a JSON string or as structured data, as a list."""
    if isinstance(value, str):
        value, problem = loads(value)
        if problem:
            raise Bad(where, f"is {problem} — it should be a JSON array of messages with role and parts")
    if not isinstance(value, list):
        raise Bad(where, f"must be a list of messages with role and parts, got {brief(value)}")
    return value


def _parts(value: list, where: str, dropped: list[str]) -> list[dict]:
    """GenAI messages ({role, parts: [{type: "text", content}, {type: "tool_call", id, name, arguments},
    {type: "tool_call_response", id, response}]}) as chat messages."""
    out = []
    for i, m in enumerate(value):
        here = f"{where}[{i}]"
        if isinstance(m, dict) and "parts" not in m and "content" in m:  # already in the chat form
            out += messages([m], here)
            continue
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool") \
                or not isinstance(m.get("parts"), list):
            raise Bad(here, 'must be a message {"role": "user", "parts": [{"type": "text", "content": "..."}]}')
        texts, calls, results = [], [], 0
        for j, p in enumerate(m["parts"]):
            kind = p.get("type") if isinstance(p, dict) else None
            if kind == "text":
                texts.append(text(p.get("content"), f"{here}.parts[{j}].content"))
            elif kind == "tool_call":
                calls.append(tool_call(p.get("id"), p.get("name"), p.get("arguments"), f"{here}.parts[{j}]"))
            elif kind == "tool_call_response":
                result = p.get("response", p.get("result"))  # "result" in the first published examples
                out.append(clean({"role": "tool", "tool_call_id": str(p.get("id") or "").strip(),
                                  "content": result if isinstance(result, str) else json.dumps(result)}, here))
                results += 1
            else:
                dropped.append(f"message parts of type {kind} (a replay cannot send them back)")
        if texts or calls or not results:
            msg = {"role": m["role"], "content": "\n".join(texts) if texts or not calls else None}
            out.append({**msg, "tool_calls": calls} if calls else msg)
    return out


def from_otel(span: dict, scope: str | None, score_range: Range) -> Parsed | str:
    if "attributes" not in span:
        raise Bad("attributes", f"is missing — each record needs to be {EXAMPLES['otel']} (is --format right?)")
    attrs = _attributes(span["attributes"], "attributes")
    op = attrs.get("gen_ai.operation.name")
    if op and op not in CHAT_OPS:
        return f"{op} spans (not a model call)"
    if "gen_ai.input.messages" not in attrs or "gen_ai.output.messages" not in attrs:
        return "spans without gen_ai.input.messages and gen_ai.output.messages (not chat spans, or content capture off)"
    status = span.get("status") if isinstance(span.get("status"), dict) else {}
    if status.get("code", status.get("status_code")) in (2, "STATUS_CODE_ERROR", "ERROR"):
        return "failed calls (span status ERROR)"
    system = attrs.get("gen_ai.system_instructions")
    if isinstance(system, str) and loads(system)[1]:
        system = [{"type": "text", "content": system}]  # plain text where the conventions have parts
    dropped: list[str] = []
    msgs = _parts([{"role": "system", "parts": _structured(system, "gen_ai.system_instructions")}] if system else [],
                  "gen_ai.system_instructions", dropped)
    msgs += _parts(_structured(attrs["gen_ai.input.messages"], "gen_ai.input.messages"), "gen_ai.input.messages",
                   dropped)
    if not any(m["role"] != "system" for m in msgs):
        raise Bad("gen_ai.input.messages", "holds no user message — it should be the chat history sent to the model")
    outputs = _parts(_structured(attrs["gen_ai.output.messages"], "gen_ai.output.messages"), "gen_ai.output.messages",
                     dropped)
    reply = next((m for m in outputs if m["role"] == "assistant"), None)
    if reply is None:
        raise Bad("gen_ai.output.messages", 'holds no assistant message — it should be [{"role": "assistant", '
                                            '"parts": [{"type": "text", "content": "..."}]}]')
    ctx = span.get("context") if isinstance(span.get("context"), dict) else {}
    trace = span.get("traceId") or span.get("trace_id") or ctx.get("trace_id")
    span_id = span.get("spanId") or span.get("span_id") or ctx.get("span_id")
    rid = attrs.get("gen_ai.response.id")
    cid = stable_id(f"response:{rid}" if rid else f"span:{trace}:{span_id}" if span_id else record_key(span))
    model = str(attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or "")
    params = {"model": attrs["gen_ai.request.model"]} if attrs.get("gen_ai.request.model") else {}
    params.update({name: attrs[k] for k, name in OTEL_PARAMS.items() if k in attrs})
    start = span.get("startTimeUnixNano", span.get("start_time"))
    begun, ended = epoch(start), epoch(span.get("endTimeUnixNano", span.get("end_time")))
    call = Call(cid, scope_name(scope, attrs.get("gen_ai.agent.name"), model), model, tuple(msgs), params,
                reply["content"] or "", tuple(reply.get("tool_calls", ())), "done",
                conversation=str(attrs.get("gen_ai.conversation.id") or ""),
                prompt_tokens=count(attrs.get("gen_ai.usage.input_tokens")),
                completion_tokens=count(attrs.get("gen_ai.usage.output_tokens")),
                latency_s=round(max(0.0, ended - begun), 6) if begun is not None and ended is not None else 0.0,
                source="import:otel", created_at=when(start))
    found = []
    for k, event in enumerate(span.get("events") if isinstance(span.get("events"), list) else []):
        if isinstance(event, dict) and event.get("name") == "gen_ai.evaluation.result":
            e = _attributes(event.get("attributes"), f"events[{k}].attributes")
            name = e.get("gen_ai.evaluation.name")
            said = "; ".join(str(x) for x in (e.get("gen_ai.evaluation.score.label"),
                                               e.get("gen_ai.evaluation.explanation")) if x)
            found += verdict(cid, to_value(e.get("gen_ai.evaluation.score.value"),
                                           f"events[{k}].gen_ai.evaluation.score.value", score_range),
                             f"{name}: {said}" if name and said else said, None, f"events[{k}].")
    return call, found, dropped


def _lf_reply(value: Any, where: str) -> tuple[str, list[dict]] | None:
    if isinstance(value, str):
        return clean(value, where), []
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        value = value[-1]
    if isinstance(value, dict) and isinstance(value.get("choices"), list) and value["choices"]:
        value = value["choices"][0].get("message") if isinstance(value["choices"][0], dict) else None
    if isinstance(value, dict) and ("content" in value or "tool_calls" in value):
        return text(value.get("content"), f"{where}.content"), tool_calls(value.get("tool_calls"), f"{where}.tool_calls")
    return None


def _lf_messages(value: Any, where: str) -> list[dict] | None:
    if isinstance(value, str) and value.strip():
        return [{"role": "user", "content": clean(value, where)}]
    if isinstance(value, dict) and "messages" in value:
        return messages(value["messages"], f"{where}.messages")
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        return messages(value, where)
    return None


def _lf_score(cid: str, s: Any, where: str, score_range: Range) -> list[Feedback]:
    """A Langfuse score as feedback: NUMERIC and BOOLEAN give a value, CATEGORICAL a comment (a label has no place
    on a scale from bad to good unless a person says which)."""
    if not isinstance(s, dict):
        return []  # a score id (the trace list gives only ids): nothing to import, counted by the caller
    name, value = str(s.get("name") or "score"), s.get("value")
    kind = str(s.get("dataType") or ("NUMERIC" if isinstance(value, (int, float)) and not isinstance(value, bool) else
                                     "BOOLEAN" if isinstance(value, bool) or str(value).lower() in ("true", "false")
                                     else "CATEGORICAL")).upper()
    comment = s.get("comment") if isinstance(s.get("comment"), str) and s["comment"].strip() else ""
    if kind == "BOOLEAN":
        value = value if value is not None else s.get("stringValue")
        if str(value).lower() not in ("1", "0", "1.0", "0.0", "true", "false"):
            raise Bad(f"{where}.value", f"is {brief(value)}; a BOOLEAN score is 1 or 0 (true or false)")
        value = str(value).lower() in ("1", "1.0", "true")
    elif kind == "CATEGORICAL":
        value = s.get("stringValue", value)
    elif kind != "NUMERIC":
        raise Bad(f"{where}.dataType", f"must be NUMERIC, BOOLEAN or CATEGORICAL, got {brief(kind)}")
    # the comment says which score said what: a trace may carry several, and reflection reads them all
    said = f"{name}: {str(value).lower() if isinstance(value, bool) else value}" + (f" ({comment})" if comment else "")
    number = None if kind == "CATEGORICAL" else to_value(value, f"{where}.value", score_range if kind == "NUMERIC" else None)
    return verdict(cid, number, said, None, f"{where}.")


def from_langfuse(trace: dict, scope: str | None, score_range: Range) -> Parsed | str:
    if not isinstance(trace.get("id"), str) or not trace["id"]:
        raise Bad("id", f"must be the trace's id (a string), got {brief(trace.get('id'))}")
    gens = [o for o in trace.get("observations") or [] if isinstance(o, dict) and o.get("type") == "GENERATION"]
    gen = gens[-1] if gens else {}
    try:
        msgs, reply = _lf_messages(trace.get("input"), "input"), _lf_reply(trace.get("output"), "output")
    except Bad:
        if not gen:
            raise
        msgs = reply = None
    if (msgs is None or reply is None) and gen:  # a decorated function's trace: the model call is inside it
        where = f"observations[{trace['observations'].index(gen)}]"
        msgs, reply = _lf_messages(gen.get("input"), f"{where}.input"), _lf_reply(gen.get("output"), f"{where}.output")
    if msgs is None:
        raise Bad("input", "must be the chat messages (a list of {role, content}), a string, or an object with "
                           f'"messages", got {brief(trace.get("input"))}')
    if reply is None:
        raise Bad("output", f'must be the reply: a string or a message {{"role": "assistant", "content": "..."}}, '
                            f"got {brief(trace.get('output'))}")
    usage = gen.get("usage") if isinstance(gen.get("usage"), dict) else {}
    meta = trace.get("metadata") if isinstance(trace.get("metadata"), dict) else {}
    cid = stable_id(f"langfuse:{trace['id']}")
    call = Call(cid, scope_name(scope, trace.get("name")), str(gen.get("model") or meta.get("model") or ""),
                tuple(msgs), {}, reply[0], tuple(reply[1]), "done", conversation=str(trace.get("sessionId") or ""),
                prompt_tokens=count(usage.get("input", trace.get("inputTokens"))),
                completion_tokens=count(usage.get("output", trace.get("outputTokens"))),
                latency_s=float(trace["latency"]) if isinstance(trace.get("latency"), (int, float)) else 0.0,
                source="import:langfuse", created_at=when(trace.get("timestamp")))
    scores = trace.get("scores")
    listed = ([(f"scores.{k}", {"name": k, "value": v}) for k, v in scores.items()] if isinstance(scores, dict)
              else [(f"scores[{i}]", s) for i, s in enumerate(scores if isinstance(scores, list) else [])])
    ids = ["Langfuse scores given only as ids (export traces with their scores to bring them in)"
           for _, s in listed if not isinstance(s, dict)]
    return call, [f for where, s in listed for f in _lf_score(cid, s, where, score_range)], ids


PARSERS = {"openai": from_openai, "otel": from_otel, "langfuse": from_langfuse}
