"""Distillation: the adapter file format and its provenance (fast), and on the real 0.5B model (tier 3) the
round trip torch -> GGUF adapter -> llama.cpp, a few training steps that must change the adapter and lower
the loss, and `secondnature distill` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from secondnature.models import ModelError, load_model
from secondnature.store import LessonStore

MESSAGES = ({"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "How many times does the letter r appear in strawberry?"})


def tiny_adapter(path: Path, base: str) -> Path:
    """A GGUF LoRA adapter file with our metadata and one tensor pair, written without torch."""
    import gguf
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", 16.0)
    w.add_string("secondnature.base", base)
    w.add_string("secondnature.revision", "3")
    w.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((8, 896), dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight.lora_b", np.zeros((896, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_adapter_metadata_and_a_missing_base_is_a_clear_error(tmp_path):
    pytest.importorskip("gguf")  # the reader comes with the embedded and train extras
    from secondnature.weights import adapter_meta
    path = tiny_adapter(tmp_path / "a.gguf", str(tmp_path / "gone.gguf"))
    assert adapter_meta(path) == {"base": str(tmp_path / "gone.gguf"), "revision": "3"}
    with pytest.raises(ModelError, match="LoRA adapter for .*gone.gguf.*not there"):
        load_model(str(path))


def test_the_store_records_what_an_adapter_was_distilled_from(tmp_path):
    store = LessonStore(tmp_path / "s.db")
    assert "005_distillations" in store.migrations()
    did = store.add_distillation("letters", 4, "/a.gguf", "/base.gguf", {"rank": 8}, {"last_loss": 0.1})
    got = store.distillations("letters")
    assert got[0]["id"] == did and got[0]["revision"] == 4 and got[0]["config"] == {"rank": 8}
    assert store.distillations("other") == []


def test_distill_refuses_an_endpoint_policy(tmp_path):
    from test_learn import taskset

    from secondnature.models import ScriptedModel
    from secondnature.train.distill import distill
    with pytest.raises(ModelError, match="embedded model's own weights"):
        distill(ScriptedModel(lambda m: "Answer: 1"), taskset(), LessonStore(tmp_path / "s.db"))


# ---------------------------------------------------------------- tier 3: torch and llama.cpp on the 0.5B model

def llama_logits(path: Path, lora: Path | None, ids: list[int]) -> np.ndarray:
    from llama_cpp import Llama
    llm = Llama(model_path=str(path), n_ctx=512, verbose=False, n_threads=2, lora_path=str(lora) if lora else None)
    llm.eval(ids)
    out = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()
    llm.close()
    return out


@pytest.mark.real
def test_round_trip_torch_to_gguf_adapter_to_llama_cpp(tmp_path, policy_path):
    """Stated tolerance: next-token logits of the two runtimes agree within 1.0 (max abs, logits spread about
    2.5 sd) with the same top token; an unchanged (zero) adapter changes llama.cpp's logits by < 0.05; a
    trained adapter moves both runtimes' logits the same way (correlation > 0.99)."""
    from secondnature.train import lora
    model, tok = lora.load(policy_path)
    ids = list(tok.apply_chat_template(list(MESSAGES), add_generation_prompt=True, tokenize=True)["input_ids"])
    torch_base = lora.next_token_logits(model, tok, MESSAGES)
    cpp_base = llama_logits(policy_path, None, ids)
    assert np.abs(torch_base - cpp_base).max() < 1.0 and torch_base.argmax() == cpp_base.argmax()

    examples = [lora.Example(MESSAGES, "Spell it: s-t-r-a-w-b-e-r-r-y. The r's: 3.\nAnswer: 3")] * 4
    peft_model, report = lora.train(model, tok, examples, epochs=2, batch=2, lr=1e-3)
    untrained = tmp_path / "zero.gguf"
    try:
        # the same wrapping with B = 0 exports an adapter that must change nothing
        zero = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_B" in n}
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.data.zero_()
        lora.export(peft_model, untrained, alpha=16, meta={"base": str(policy_path)})
        assert np.abs(llama_logits(policy_path, untrained, ids) - cpp_base).max() < 0.05
        for n, p in peft_model.named_parameters():
            if n in zero:
                p.data.copy_(zero[n])
        assert any(float(v.abs().max()) > 0 for v in zero.values()), "training must change the adapter"
        assert report.losses[-1] < report.losses[0], f"the loss must fall: {report.losses}"
        trained = lora.export(peft_model, tmp_path / "trained.gguf", alpha=16, meta={"base": str(policy_path)})
        torch_tuned = lora.next_token_logits(peft_model, tok, MESSAGES)
        cpp_tuned = llama_logits(policy_path, trained, ids)
        assert np.abs(torch_tuned - cpp_tuned).max() < 1.0
        assert np.corrcoef(torch_tuned - torch_base, cpp_tuned - cpp_base)[0, 1] > 0.99
        assert np.abs(torch_tuned - torch_base).max() > 1.0  # the adapter does something worth comparing
    finally:
        peft_model.unload()


@pytest.mark.real
def test_distill_command_end_to_end(tmp_path, capsys, policy_path):
    """Teacher rollouts with a hand-written lesson, a few LoRA steps matching the teacher's logits, an adapter that
    `--policy` runs."""
    from secondnature.cli import main
    from secondnature.types import Lesson
    store_path = tmp_path / "s.db"
    store = LessonStore(store_path)
    lesson = store.add_lesson(Lesson("", "Write the word's letters separated by commas, then count the matches "
                                         "one by one.", "letters:medium,hard"))
    rev = store.commit_revision("letters:medium,hard", [lesson.id], "by hand")
    store.close()
    adapter = tmp_path / "habit.gguf"
    assert main(["--store", str(store_path), "distill", "letters:medium,hard", "--tasks", "6", "--samples", "3",
                 "--max-steps", "3", "--max-tokens", "160", "--match", "logits", "--out", str(adapter), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["adapter"] == str(adapter) and adapter.is_file() and out["revision"] == rev.id
    assert out["teacher_rollouts"] == 18 and 1 <= out["examples"] <= 12
    assert out["steps"] == min(3, -(-out["examples"] // 4) * 2)  # epochs of batches of 4, capped by --max-steps
    recorded = LessonStore(store_path).distillations("letters:medium,hard")
    assert recorded[0]["revision"] == rev.id and recorded[0]["adapter"] == str(adapter)
    policy = load_model(str(adapter))
    assert policy.lora == adapter and "+habit" in policy.name
    assert main(["--store", str(store_path), "eval", "letters:medium,hard", "--policy", str(adapter), "--no-lessons",
                 "--limit", "2", "--max-tokens", "120", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 2 and r["policy"].endswith("+habit")


def test_balance_caps_the_leading_answer_at_the_runner_up():
    from secondnature.train.distill import balance_labels
    from secondnature.train.lora import Example
    exs = [Example(MESSAGES, f"work ... Answer: {a}") for a in "1112111231"]
    kept = balance_labels(exs)
    labels = [e.completion[-1] for e in kept]
    assert labels.count("1") == labels.count("2") == 2 and labels.count("3") == 1
    assert balance_labels(exs[:3]) == exs[:3]  # one answer only: nothing to balance against


def test_logit_matching_is_zero_when_the_student_already_is_the_teacher():
    """KL(teacher || student) along a reply: 0 for an untrained adapter reading the teacher's own prompt,
    positive when the teacher reads another prompt (the lessons), and it carries a gradient to the adapter."""
    torch = pytest.importorskip("torch")
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from secondnature.train.lora import _kl_to_teacher
    torch.manual_seed(0)
    model = get_peft_model(Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64,
                                                        num_hidden_layers=2, num_attention_heads=4,
                                                        num_key_value_heads=2)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    prompt, reply = [1, 2, 3, 4], [5, 6, 7]
    ids, labels = prompt + reply, [-100] * len(prompt) + reply
    assert _kl_to_teacher(model, ids, labels, prompt, torch).item() == pytest.approx(0.0, abs=1e-6)
    kl = _kl_to_teacher(model, ids, labels, [9, 9, 1, 2, 3, 4], torch)
    assert kl.item() > 1e-4
    kl.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_" in n)


def test_the_reward_filter_keeps_accepted_answers_and_min_reward_0_keeps_all(tmp_path):
    """The teacher's answers the reward rejects are not training examples, unless the user asks for every answer."""
    from secondnature.models import ScriptedModel
    from secondnature.tasks import load_taskset
    from secondnature.train.distill import DistillConfig, teacher_examples
    from secondnature.types import Lesson
    ts = load_taskset("letters:medium,hard")
    replies = iter(["Answer: 1", "Answer: 2", "Answer: 3", "Answer: 4"] * 100)
    teacher = ScriptedModel(lambda _m: next(replies))
    store = LessonStore(tmp_path / "s.db")
    lessons = [Lesson("L1", "Count each letter once.", ts.name)]
    strict = DistillConfig(tasks=8, samples=4, per_task=4, balance=False)
    kept, rs = teacher_examples(teacher, ts, lessons, store, strict, lambda _n, _m: None)
    right = [r for r in rs if r.score.value >= 1.0]
    assert len(rs) == 32 and 0 < len(kept) == len(right) < 32
    assert all("Count each letter once." in ex.teacher[0]["content"] for ex in kept)  # the teacher read the lessons
    assert all("Count each letter once." not in ex.messages[0]["content"] for ex in kept)  # the student does not
    everything, _ = teacher_examples(teacher, ts, lessons, store, DistillConfig(tasks=8, samples=4, per_task=4,
                                                                                balance=False, min_reward=0.0),
                                     lambda _n, _m: None)
    assert len(everything) == 32
