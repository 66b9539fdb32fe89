"""secondnature: an LLM agent learns lessons from its own rollouts, keeps those that win a paired test on fresh
tasks, stores them with their evidence, and injects them into its prompt under a token budget.

Your own task and model, in a few lines::

    import secondnature as sn

    tasks = [{"prompt": "What is the capital of France?", "answer": "Paris"}, ...]   # 40 or more
    taskset = sn.task_set("capitals", tasks, reward="exact")      # or your function (task, reply) -> float
    policy = sn.load_model("default")                             # the embedded 0.5B model, or a GGUF path,
    reflector = sn.load_model("reflector")                        # or sn.load_model("gpt-4o-mini", base_url=...)
    result = sn.learn(policy, reflector, taskset, sn.open_store("capitals.db"), sn.LearnConfig(budget=200))
    for lesson in result.lessons:
        print(lesson.id, lesson.gain, lesson.text)
    system = sn.system_prompt(taskset.instruction, result.lessons, budget_tokens=300)  # for your own calls

A model is anything with `name`, `identity`, `chat(...)` and `count_tokens(...)` (see `Model`); the completion
cache keys on `identity`, never on the name alone. `learn` stops when its rollout budget cannot pay for another
gate or when nothing is left to win, and says why in `result.stopped`.
"""
from .evaluate import EvalResult, evaluate
from .executor import executing
from .inject import system_prompt
from .judge import judge_reward, majority_reward, pairwise_reward
from .learn import LearnConfig, LearnResult, learn
from .models import LlamaModel, Model, ModelError, OpenAIModel, load_model
from .propose import PROPOSERS, Proposal, Proposer, Step
from .rewards import as_reward
from .store import LessonStore, open_store
from .tasks import load_taskset, task_set
from .traces import import_traces
from .traffic import recorded_taskset
from .types import (
                    Call,
                    Candidate,
                    Completion,
                    Edit,
                    Feedback,
                    GateRecord,
                    Lesson,
                    Reflection,
                    Revision,
                    Rollout,
                    Score,
                    Task,
                    TaskSet,
)

__all__ = [
    # learning
    "learn", "LearnConfig", "LearnResult", "PROPOSERS", "Proposer", "Proposal", "Step",
    # tasks and rewards
    "Task", "TaskSet", "Score", "task_set", "load_taskset", "as_reward",
    # rewards without a checker: a rubric judge (pointwise or pairwise) and a label-free majority vote
    "judge_reward", "pairwise_reward", "majority_reward",
    # models
    "Model", "Completion", "load_model", "OpenAIModel", "LlamaModel", "ModelError",
    # where rollouts run: `with executing("ray:HOST:PORT"): ...` (docs/ray.md)
    "executing",
    # lessons, their store and their use
    "Lesson", "Revision", "Edit", "Candidate", "GateRecord", "Reflection", "Rollout",
    "open_store", "LessonStore", "system_prompt", "evaluate", "EvalResult",
    # an application's traffic: recorded calls, their feedback, logs imported, a scope's calls as a task set
    # (the proxy itself is secondnature.serve, the `serve` extra)
    "Call", "Feedback", "import_traces", "recorded_taskset",
]
