"""GRPO: advantages and the clipped loss (fast), the same loss value and gradient as TRL's GRPOTrainer on a tiny
batch, and a real run of a few steps on the 0.5B model (tier 3)."""
from __future__ import annotations

import math

import pytest

from secondnature.train.grpo import advantages


def test_advantages_are_group_relative_and_zero_for_a_uniform_group():
    a = advantages([1, 0, 0, 1, 1, 1, 1, 1], 4)
    assert a[4:] == [0.0] * 4  # every sample the same: nothing to learn from that task
    assert math.isclose(sum(a[:4]), 0.0, abs_tol=1e-9) and a[0] > 0 > a[1]
    std = math.sqrt(sum((x - 0.5) ** 2 for x in [1, 0, 0, 1]) / 3)  # unbiased, as torch.std
    assert math.isclose(a[0], 0.5 / (std + 1e-4))


def test_clipped_loss_matches_the_formula():
    torch = pytest.importorskip("torch")
    from secondnature.train.grpo import grpo_loss
    logps = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]])
    old = torch.tensor([[-1.2, -1.0, 0.0], [-0.5, -0.4, -0.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([1.0, -2.0])
    ratio = torch.exp(logps - old)
    expected = []
    for i in range(2):
        toks = [-min(r * adv[i], min(max(r, 0.8), 1.2) * adv[i]) for r, m in zip(ratio[i].tolist(), mask[i]) if m]
        expected.append(sum(toks) / len(toks))
    assert math.isclose(grpo_loss(logps, old, adv, mask).item(), sum(expected) / 2, rel_tol=1e-6)


@pytest.mark.real
def test_same_loss_and_gradient_as_trl_on_a_tiny_batch(policy_path, tmp_path):
    """TRL's GRPOTrainer._compute_loss (loss_type grpo, beta 0, one update per batch) and ours, on one tiny random
    Qwen2 model with the policy's tokenizer, 2 tasks x 4 completions of different lengths."""
    torch = pytest.importorskip("torch")
    trl = pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
    from trl.trainer.utils import nanstd

    from secondnature.train.grpo import _token_logps, grpo_loss
    tok = AutoTokenizer.from_pretrained(policy_path.parent, gguf_file=policy_path.name)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    args = trl.GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4,
                          max_completion_length=8, report_to=[], use_cpu=True, loss_type="grpo", beta=0.0)
    trainer = trl.GRPOTrainer(model=model, reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
                              args=args, train_dataset=Dataset.from_list([{"prompt": "hi"}] * 8),
                              processing_class=tok)
    prompts = [tok("How many r in berry?", add_special_tokens=False)["input_ids"],
               tok("How many s in mass?", add_special_tokens=False)["input_ids"]]
    assert len(prompts[0]) == len(prompts[1])  # same length: no left padding to reason about
    completions = [tok(t, add_special_tokens=False)["input_ids"] for t in
                   ["Answer: 2", "Two.", "b-e-r-r-y: 2", "Answer: 3", "3", "Answer: 4", "g-e-e-s-e", "four e"]]
    rewards = [1, 0, 1, 0, 0, 0, 1, 0]
    ours_adv = advantages(rewards, 4)
    r = torch.tensor(rewards, dtype=torch.float32)
    grouped_mean = r.view(-1, 4).mean(dim=1).repeat_interleave(4)
    trl_adv = (r - grouped_mean) / (nanstd(r.view(-1, 4), dim=1).repeat_interleave(4) + 1e-4)
    assert torch.allclose(torch.tensor(ours_adv), trl_adv, atol=1e-5)

    width = max(map(len, completions))
    inputs = {"prompt_ids": torch.tensor([prompts[i // 4] for i in range(8)]),
              "prompt_mask": torch.ones(8, len(prompts[0]), dtype=torch.long),
              "completion_ids": torch.tensor([c + [tok.pad_token_id or 0] * (width - len(c)) for c in completions]),
              "completion_mask": torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in completions]),
              "advantages": trl_adv}
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which is not running here
    theirs = trainer._compute_loss(model, inputs)
    theirs.backward()
    their_grad = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    model.zero_grad()
    ours = 0.0
    for i, c in enumerate(completions):  # one completion at a time, unpadded, as grpo.train does
        logps = _token_logps(model, prompts[i // 4], c)
        loss = grpo_loss(logps, logps.detach(), torch.tensor([ours_adv[i]]), torch.ones_like(logps)) / 8
        loss.backward()
        ours += loss.item()
    assert math.isclose(ours, theirs.item(), rel_tol=1e-4, abs_tol=1e-7)
    # the gradients agree up to float32 rounding in a sum whose terms nearly cancel (advantages sum to 0 per group)
    our_grad = model.model.layers[0].self_attn.q_proj.weight.grad
    cos = torch.nn.functional.cosine_similarity(our_grad.flatten(), their_grad.flatten(), dim=0).item()
    rel = ((our_grad - their_grad).norm() / their_grad.norm()).item()
    print(f"gradient cosine {cos:.6f}, relative difference {rel:.2e}")
    assert cos > 0.999 and rel < 0.05


@pytest.mark.real
def test_a_few_grpo_steps_change_the_adapter_and_the_bench_arm_runs(policy_path, tmp_path):
    """Two real steps on the 0.5B model with a reward that varies between samples (the parity of the reply's
    length), so every group has something to learn: the adapter must move; then the bench's grpo arm end to end."""
    pytest.importorskip("torch")
    import numpy as np

    from secondnature.bench.run import BenchConfig, run_bench
    from secondnature.models import CachedModel, LlamaModel
    from secondnature.store import LessonStore
    from secondnature.tasks import load_taskset
    from secondnature.train import grpo
    from secondnature.types import Score, Task, TaskSet
    tasks = tuple(Task(f"t{i}", f"Name a fruit that starts with the letter {c}.", "") for i, c in enumerate("abcp"))
    ts = TaskSet("parity", tasks, lambda t, text: Score(float(len(text) % 2), "odd length wins"), "Answer briefly.")
    cfg = grpo.GRPOConfig(budget=16, group_size=4, tasks_per_step=2, max_tokens=24, lr=1e-3, seed=0)
    result = grpo.train(policy_path, ts, tasks, cfg, tmp_path)
    assert result.steps == 2 and result.rollouts == 16 and result.adapter is not None
    import gguf
    reader = gguf.GGUFReader(str(result.adapter))
    b = [np.abs(t.data).max() for t in reader.tensors if t.name.endswith(".lora_b")]
    assert b and max(b) > 0, "GRPO updates must move the adapter off its zero start"
    assert all(np.isfinite(x) for x in result.losses)

    store = LessonStore(tmp_path / "cache.db")
    policy = CachedModel(LlamaModel(policy_path), store)
    runs = run_bench(policy, policy, load_taskset("letters:medium,hard"),
                     BenchConfig(arms=("grpo",), budget=8, seeds=(0,), val_size=2, test_limit=2, max_tokens=32),
                     tmp_path)
    assert runs[0].arm == "grpo" and runs[0].train_rollouts == 8 and runs[0].test.n == 2
    assert runs[0].adapter is not None and runs[0].curve[0]["rollouts"] == 0
    # the arm's samplers share the base model with the policy: freeing them must leave it usable (a second
    # seed used to crash the process in llama.cpp here)
    assert policy.count_tokens("How many r are in strawberry?") > 0
