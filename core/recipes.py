"""Training recipes: a model shape plus training settings, tuned by measurement (bench/time_to_quality.py;
figures in BENCHMARKS.md). The app and the CLI start from the default CPU recipe."""

from __future__ import annotations

# max_steps of a run that only its time budget ends (a step count no run reaches)
NO_STEP_LIMIT = 10**9

RECIPES: dict[str, dict] = {
    # Best character-level validation loss on Tiny Shakespeare after 3 minutes on a 2-core CPU.
    "cpu-3min": dict(
        preset="micro",
        overrides=dict(n_layer=4, n_head=4, n_embd=128, block_size=64),
        train=dict(
            batch_size=24,
            lr=4e-3,
            warmup_steps=50,
            max_steps=NO_STEP_LIMIT,
            max_time=180.0,
            schedule="wsd",
            cooldown_frac=0.4,
            min_lr_ratio=0.0,
            optimizer="muon",
            weight_decay=0.0,
            beta2=0.99,
            eval_every=250,
            eval_batches=20,
        ),
    ),
}
DEFAULT_CPU_RECIPE = "cpu-3min"
