"""LoRA on the policy's own weights: load its GGUF into torch, train an adapter, and write the adapter back
as a GGUF LoRA file that llama.cpp applies at load time, so the trained habit runs without torch.

torch, transformers and peft are imported here only, and only when called (`pip install
'secondnature[train]'`). transformers dequantises the GGUF on load; the dequantised weights are
exactly the values llama.cpp multiplies with, so an adapter trained against them means the same
thing to both runtimes.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..models import ModelError
from ..weights import META_PREFIX

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _require() -> Any:
    try:
        import peft  # noqa: F401
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        raise ModelError("distillation needs torch, transformers and peft: pip install 'secondnature[train]' "
                         "(it pins the CPU build of torch)") from e
    return torch


_LOADED: dict[str, tuple[Any, Any]] = {}


def load(gguf_path: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 from a GGUF file, once per process (dequantising takes a while)."""
    torch = _require()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = Path(gguf_path).resolve()
    if str(path) not in _LOADED:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        _LOADED[str(path)] = (model.eval(), tok)
    return _LOADED[str(path)]


@dataclass(frozen=True)
class Example:
    """One thing the student learns to say: the messages it sees (no lessons) and the teacher's reply."""

    messages: tuple[dict, ...]
    completion: str
    teacher: tuple[dict, ...] = ()   # the teacher's messages (lessons in the prompt), for matching its logits


def prompt_ids(tok: Any, messages: Sequence[dict]) -> list[int]:
    """The chat template's token ids for `messages`, up to where the assistant's reply starts."""
    ids = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # transformers 5 returns a BatchEncoding


def encode(tok: Any, ex: Example, max_len: int) -> tuple[list[int], list[int]]:
    """Token ids and labels: the reply (and its end-of-turn) is learned, the prompt is only context (-100)."""
    prompt = prompt_ids(tok, ex.messages)
    reply = tok(ex.completion + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = (list(prompt) + reply)[:max_len]
    labels = ([-100] * len(prompt) + reply)[:max_len]
    return ids, labels


@dataclass(frozen=True)
class TrainReport:
    steps: int
    examples: int
    losses: tuple[float, ...]    # mean loss of each optimiser step
    seconds: float
    peak_rss_mb: float


def wrap(model: Any, rank: int, alpha: int) -> Any:
    """`model` with a fresh LoRA (peft) on every linear layer of its blocks; `unload()` takes it off again."""
    from peft import LoraConfig, get_peft_model
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                                            target_modules=list(TARGETS), task_type="CAUSAL_LM"))


def train(model: Any, tok: Any, examples: Sequence[Example], *, rank: int = 8, alpha: int = 16, epochs: int = 2,
          lr: float = 2e-4, batch: int = 4, max_len: int = 512, seed: int = 0, max_steps: int | None = None,
          match: str = "tokens", progress: Callable[[int, str], None] = lambda _n, _m: None) -> tuple[Any, TrainReport]:
    """Wrap `model` in a fresh LoRA (peft) on every linear layer of the blocks and fit the examples' replies.

    match="tokens": cross-entropy on the teacher's reply (the student learns to say it). match="logits":
    along the same reply, the KL divergence from the teacher's next-token distribution (the same model,
    adapter off, lessons in its prompt) to the student's, so the student learns how sure the teacher
    was, not only what it said once. A plain loop: AdamW, gradient accumulation over `batch` examples,
    one sequence at a time (no padding on CPU, where batching buys little)."""
    torch = _require()
    import resource

    torch.manual_seed(seed)
    peft_model = wrap(model, rank, alpha)
    if match not in ("tokens", "logits"):
        raise ValueError(f"match must be 'tokens' or 'logits', not {match!r}")
    data = [encode(tok, ex, max_len) for ex in examples]
    teacher_prompts = [prompt_ids(tok, ex.teacher or ex.messages) for ex in examples]
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    total = max(1, math.ceil(len(data) / batch) * epochs)
    total = min(total, max_steps) if max_steps else total
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, total // 10)))
    losses: list[float] = []
    order = list(range(len(data)))
    rng = random.Random(seed)
    t0 = time.perf_counter()
    peft_model.train()
    while len(losses) < total:
        rng.shuffle(order)
        for start in range(0, len(order), batch):
            if len(losses) >= total:
                break
            chunk = [(data[i], teacher_prompts[i]) for i in order[start:start + batch]]
            tokens = sum(sum(1 for x in labels if x != -100) for (_, labels), _ in chunk) or 1
            step_loss = 0.0
            for (ids, labels), teacher_prompt in chunk:
                n = sum(1 for x in labels[1:] if x != -100)  # loss is a mean over the shifted labels
                if match == "tokens":
                    loss = peft_model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
                else:
                    loss = _kl_to_teacher(peft_model, ids, labels, teacher_prompt, torch)
                (loss * n / tokens).backward()
                step_loss += loss.item() * n / tokens
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(step_loss)
            progress(1, f"step {len(losses)}/{total}: loss {step_loss:.3f}")
    peft_model.eval()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peft_model, TrainReport(len(losses), len(data), tuple(losses), time.perf_counter() - t0, rss)


def _kl_to_teacher(peft_model: Any, ids: list[int], labels: list[int], teacher_prompt: list[int], torch: Any) -> Any:
    """Mean over the reply's positions of KL(teacher || student), the teacher being the base model (adapter
    off) reading the lessons' prompt and the same reply."""
    start = next(i for i, x in enumerate(labels) if x != -100)  # first reply token
    reply = ids[start:]
    with torch.no_grad(), peft_model.disable_adapter():
        t = peft_model(input_ids=torch.tensor([teacher_prompt + reply])).logits[0, len(teacher_prompt) - 1:-1]
    s = peft_model(input_ids=torch.tensor([ids])).logits[0, start - 1:-1]
    t_logp = torch.log_softmax(t.float(), dim=-1)
    return (t_logp.exp() * (t_logp - torch.log_softmax(s.float(), dim=-1))).sum(-1).mean()


def _gguf_names(n_blocks: int) -> Any:
    import gguf
    return gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, n_blocks)


def export(peft_model: Any, path: str | Path, *, alpha: int, meta: dict[str, str | int]) -> Path:
    """Write the adapter as a GGUF LoRA (F32) with our metadata beside llama.cpp's; returns the path.

    llama.cpp finds each pair by name (`blk.N.attn_q.weight.lora_a`/`lora_b`) and checks its shapes
    against the base tensor; A is stored (rank, in) and B (out, rank), as peft keeps them, which in
    ggml's reversed order is what llama.cpp expects."""
    import gguf
    import numpy as np
    arch = peft_model.config.model_type
    names = _gguf_names(peft_model.config.num_hidden_layers)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(alpha))
    for key, value in meta.items():
        writer.add_string(META_PREFIX + key, str(value))
    count = 0
    for name, module in peft_model.named_modules():
        if not (hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {})):
            continue
        hf = name.split("base_model.model.", 1)[-1]
        base = names.get_name(hf + ".weight", try_suffixes=(".weight",))
        if base is None:
            raise ModelError(f"no GGUF name for {hf}; this architecture ({arch}) is not supported for export")
        a = module.lora_A["default"].weight.detach().float().numpy()
        b = module.lora_B["default"].weight.detach().float().numpy()
        writer.add_tensor(f"{base}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(f"{base}.lora_b", np.ascontiguousarray(b, dtype=np.float32))
        count += 1
    if not count:
        raise ModelError("the model has no LoRA layers to export")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)  # a killed export leaves a .partial file, never a truncated adapter
    return path


def next_token_logits(model: Any, tok: Any, messages: Sequence[dict]) -> Any:
    """The model's logits for the first reply token (numpy), for comparing runtimes."""
    torch = _require()
    with torch.no_grad():
        return model(input_ids=torch.tensor([prompt_ids(tok, messages)])).logits[0, -1].float().numpy()
