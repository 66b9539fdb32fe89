"""Lessons into weights, and the reinforcement-learning baseline: torch, transformers and peft are imported only
here (the `train` extra). `distill` bakes a revision's lessons into a LoRA adapter that llama.cpp loads; `grpo`
trains an adapter with group-relative policy optimisation for `bench`'s comparison arm."""
