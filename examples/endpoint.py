"""Learning against any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp's server, LM Studio, OpenRouter),
with a model of your own beside it.

    python examples/endpoint.py --base-url http://127.0.0.1:8080/v1 --model qwen [--reflector-model gpt-4o-mini]

The key comes from OPENAI_API_KEY (a local server takes any). The policy and the reflector are endpoint models;
`Echo` below shows the three things any model object needs, the `identity` the completion cache keys on among
them: answers cached for one identity are never handed to another model.
"""
from __future__ import annotations

import argparse

import secondnature as sn


class Echo:
    """A model of your own: anything with name, identity, chat and count_tokens. Here it repeats the question, as a
    reference the learner has to beat."""

    name = "echo"
    identity = "echo@1"  # change it whenever the answers could change

    def chat(self, messages, *, n=1, temperature=0.0, max_tokens=512, seed=None, tools=None):
        return [sn.Completion(f"Answer: {messages[-1]['content'].split()[-1]}") for _ in range(n)]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--reflector-model", default=None, help="default: the same model")
    p.add_argument("--budget", type=int, default=80)
    p.add_argument("--store", default="endpoint.db")
    args = p.parse_args()
    tasks = [{"prompt": f"What is {a} plus {b}? Reply with the number.", "answer": str(a + b)}
             for a in range(3, 12) for b in range(14, 20)]
    taskset = sn.task_set("sums", tasks, reward="number")
    policy = sn.load_model(args.model, base_url=args.base_url)
    reflector = sn.load_model(args.reflector_model or args.model, base_url=args.base_url)
    store = sn.open_store(args.store)
    echo = sn.evaluate(Echo(), taskset, taskset.tasks[:10], [])
    result = sn.learn(policy, reflector, taskset, store, sn.LearnConfig(budget=args.budget, val_size=10,
                                                                        tasks_per_step=2, group_size=2))
    print(f"{policy.name}: validation {result.history[0]['val']:.0%} -> {result.val_score:.0%}, "
          f"{len(result.lessons)} lesson(s), {result.rollouts_used} rollouts; stopped: {result.stopped}")
    print(f"echo (a custom model, identity {Echo.identity!r}): {echo.accuracy:.0%} on 10 items")


if __name__ == "__main__":
    main()
