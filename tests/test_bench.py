"""Tier 1: `bench` with scripted models. Both learners find the good instruction, the real gepa package
runs through our adapter, records pair arms item by item, reruns replay from the cache, and the
seed-and-item bootstrap widens when seeds disagree."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console
from test_learn import GOOD, policy_fn, taskset

from secondnature import cli
from secondnature.bench.plots import plot_curves
from secondnature.bench.records import records
from secondnature.bench.run import BenchConfig, run_bench
from secondnature.cli import ui
from secondnature.evaluate import split_tasks
from secondnature.models import CachedModel, ScriptedModel
from secondnature.stats import seed_item_bootstrap
from secondnature.store import LessonStore


def reflector_fn(messages: list[dict]) -> str:
    """Our reflector is asked for JSON edits; GEPA's asks for a new instruction inside ``` fences."""
    text = messages[-1]["content"]
    if '"edits"' in text:
        return json.dumps({"edits": [{"op": "add", "text": GOOD}]})
    return f"```\nAnswer with a final line 'Answer: <number>'. {GOOD}\n```"


def models(tmp_path: Path) -> tuple[CachedModel, CachedModel, ScriptedModel]:
    cache = LessonStore(tmp_path / "cache.db")
    inner = ScriptedModel(policy_fn, "policy")
    return CachedModel(inner, cache), CachedModel(ScriptedModel(reflector_fn, "reflector"), cache), inner


CONFIG = BenchConfig(budget=80, seeds=(0, 1), val_size=10)


def test_arms_learn_and_records_pair_them(tmp_path: Path) -> None:
    policy, reflector, _ = models(tmp_path)
    runs = run_bench(policy, reflector, taskset(), CONFIG, tmp_path)
    assert sorted((r.arm, r.seed) for r in runs) == sorted((a, s) for a in CONFIG.arms for s in (0, 1))
    for r in runs:
        assert r.test is not None and r.test.n == 24
        if r.arm == "none":
            assert r.train_rollouts == r.val_rollouts == r.reflector_calls == 0 and r.test.accuracy < 0.2
        else:  # both learners found the instruction that makes the scripted policy right, within the budget
            assert r.test.accuracy == 1.0 and r.reflector_calls >= 1 and r.reflector_tokens > 0
            assert 0 < r.train_rollouts + r.val_rollouts <= CONFIG.budget + 10
            assert r.val_rollouts > 0 and r.train_rollouts > 0
    sn = next(r for r in runs if r.arm == "secondnature")
    gepa = next(r for r in runs if r.arm == "gepa")
    assert [x.text for x in sn.lessons] == [GOOD] and sn.instruction == taskset().instruction
    assert GOOD in gepa.instruction and not gepa.lessons
    recs = {r["arm"]: r for r in records(runs, taskset(), {"policy": "scripted"})}
    assert set(recs) == {"majority", "none", "secondnature", "gepa"}
    none, learned = recs["none"], recs["secondnature"]
    assert learned["seeds"] == [0, 1] and learned["accuracy_by_seed"] == [1.0, 1.0]
    assert learned["diff_vs_none"] == pytest.approx(1.0 - none["accuracy"])
    assert learned["diff_ci95"][0] > 0 and learned["diff_vs"]["gepa"]["diff"] == 0.0
    assert learned["prompt_tokens"] > none["prompt_tokens"] and learned["lesson_tokens"] > 0
    assert recs["majority"]["answer"] in {"1", "2", "3"}
    # the answers given, as the checker reads them, over both seeds: right on every item, so the references' own tally
    gold = Counter(t.answer for t in split_tasks(taskset(), "test"))
    assert learned["answers"] == {k: 2 * v for k, v in gold.most_common(6)}
    # answers are labels here: the constant's balanced accuracy is 1/k, the learners' (always right) 1
    assert learned["balanced_accuracy"] == 1.0 and recs["majority"]["balanced_accuracy"] <= 1 / 2
    for arm in ("none", "secondnature", "gepa"):  # every arm has a curve per seed, rising for the learners
        curves = recs[arm]["val_curves"]
        assert [c["seed"] for c in curves] == [0, 1]
        assert all(c["points"][-1]["val"] >= c["points"][0]["val"] for c in curves)
    assert recs["gepa"]["val_curves"][0]["points"][-1]["val"] == 1.0
    png = plot_curves({"toy": list(recs.values())}, tmp_path / "c.png")
    assert png.stat().st_size > 10_000


class Timed:
    """A scripted model whose every call takes a known time, to check what the bench counts as compute."""

    def __init__(self, inner: ScriptedModel, seconds: float):
        self.inner, self.seconds, self.name, self.identity = inner, seconds, inner.name, inner.identity

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def chat(self, messages: list[dict], **kw) -> list:
        return [replace(c, latency_s=self.seconds) for c in self.inner.chat(messages, **kw)]


def test_rerun_replays_from_the_cache(tmp_path: Path) -> None:
    cache = LessonStore(tmp_path / "cache.db")
    inner = ScriptedModel(policy_fn, "policy")
    policy = CachedModel(Timed(inner, 0.5), cache)
    reflector = CachedModel(Timed(ScriptedModel(reflector_fn, "reflector"), 2.0), cache)
    first = run_bench(policy, reflector, taskset(), CONFIG, tmp_path)
    calls = len(inner.calls)
    again = run_bench(policy, reflector, taskset(), CONFIG, tmp_path)
    assert len(inner.calls) == calls  # not one new policy call
    assert [r.test.scores for r in first] == [r.test.scores for r in again]
    assert [r.instruction for r in first] == [r.instruction for r in again]
    for a, b in zip(first, again):  # the compute is the same on a replay, and the replay says it was one
        assert a.model_s == pytest.approx(b.model_s) and b.replayed_s == pytest.approx(b.model_s)
        if a.arm in ("secondnature", "gepa"):
            assert a.model_s >= 2.0 + 0.5 * (a.train_rollouts + a.val_rollouts) - 1e-6 and a.replayed_s < a.model_s
    rec = {r["arm"]: r for r in records(again, taskset(), {})}["gepa"]
    assert rec["train_replayed_s"] == rec["train_model_s"] > 0


def test_seed_item_bootstrap() -> None:
    same = [[1.0, 0.0, 1.0, 1.0] * 10] * 3
    mean, (lo, hi) = seed_item_bootstrap(same)
    assert mean == pytest.approx(0.75) and lo < 0.75 < hi
    assert seed_item_bootstrap([[0.5] * 20] * 3)[1] == (0.5, 0.5)
    # seeds that disagree make the interval wider than items alone would
    varied = [[1.0] * 40, [0.0] * 40, [1.0, 0.0] * 20]
    _, (vlo, vhi) = seed_item_bootstrap(varied)
    assert vhi - vlo > hi - lo
    assert seed_item_bootstrap([]) == (0.0, (0.0, 0.0))


def test_cli_bench_on_a_jsonl_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture, toy_file: Path) -> None:
    path = toy_file
    scripted = {"p": ScriptedModel(policy_fn, "policy"), "r": ScriptedModel(reflector_fn, "reflector")}
    monkeypatch.setattr(ui, "load_model", lambda spec, base_url=None, n_ctx=4096: scripted[spec])
    out_dir = tmp_path / "results"
    code = cli.main(["bench", str(path), "--checker", "number", "--budget", "60", "--seeds", "1", "--val-size", "8",
                     "--policy", "p", "--reflector", "r", "--out", str(out_dir), "--plot"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "secondnature" in captured.out and "gepa" in captured.out and "learning curves:" in captured.out
    recs = json.loads((out_dir / "toy.json").read_text())
    assert {r["arm"] for r in recs} == {"majority", "none", "secondnature", "gepa"}
    assert all(r["task"] == "toy" and r["seeds"] == [0] for r in recs)
    assert (out_dir / "toy_curves.png").exists()
    assert set(json.loads((out_dir / "toy_curves.json").read_text())["toy"]) == {"none", "secondnature", "gepa"}
    # the learned store is kept under the benchmark's name and named in the output, for `lessons` and `distill`
    (store,) = next(r for r in recs if r["arm"] == "secondnature")["stores"]
    assert Path(store).parent.name == "toy" and Path(store).exists() and store in captured.out.replace("\n", "")


def test_cli_bench_rejects_unknown_arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("SECONDNATURE_HOME", str(tmp_path))
    monkeypatch.setattr(ui, "err", Console(stderr=True, width=10_000))
    code = cli.main(["bench", "letters", "--arms", "none,dspy"])
    assert code == 2 and "unknown arm(s) dspy" in capsys.readouterr().err


def test_gepa_scores_every_new_candidate_on_the_whole_val_sample(tmp_path: Path) -> None:
    """GEPA's evaluation cache is keyed by item id; train and val ids must not collide, or a candidate's
    train scores would stand in for some of its val scores."""
    from secondnature.bench import gepa_arm
    from secondnature.learn import LearnConfig, learn_split
    policy, reflector, _ = models(tmp_path)
    train, val = learn_split(taskset(), LearnConfig(val_size=10))
    passes: list[int] = []
    _, spend, summary = gepa_arm.optimize(policy, reflector, taskset(), train, val, budget=60, seed=0,
                                          progress=lambda n, m: m and passes.append(int(m.split("/")[1].split()[0])))
    assert passes and all(n == len(val) for n in passes)
    assert spend.val == len(val) * len(passes) and summary["candidates"] >= 2
