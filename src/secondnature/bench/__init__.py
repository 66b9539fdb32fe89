"""Methods side by side (`secondnature bench`): the lesson loop against no learning, a constant answer, the gepa
package and GRPO on LoRA weights, in one process at one rollout budget, with paired intervals over seeds and
items. Needs the `bench` extra (gepa, matplotlib); the grpo arm also needs the `train` extra."""
