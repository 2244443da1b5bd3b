"""What the trainer trains: how its model is built, which parameters learn, and how the model goes into a
checkpoint and comes back out of one.

    PlainGPT    a fresh GPT from its config: pretraining
    FineTuned   the run's starting weights (base.safetensors) with the first blocks frozen, or with LoRA
                adapters (FinetuneConfig says which)

Either way a checkpoint's model.safetensors holds plain GPT weights (LoRA merged in), so sampling, chat and
export need nothing new; what resuming needs beyond them (the LoRA adapters) goes with the trainer's state.
`for_run(run_dir, config)` is the one a run directory describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from core import lora, runs
from core.errors import CheckpointError, ConfigError
from core.messages import Text
from core.model import GPT, GPTConfig, param_count

BASE_FILE = "base.safetensors"  # a fine-tuning run's starting weights, in the run's vocabulary
METHODS = ("full", "lora")

# ----------------------------------------------------------------------------------------------------------
# Fine-tuning settings


@dataclass
class FinetuneConfig:
    method: str = "full"  # full | lora
    freeze_layers: int = 0  # full: the first N transformer blocks stay as they are
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_layers: list[int] | None = None  # which blocks get adapters; None: all
    lora_targets: list[str] = field(default_factory=lambda: list(lora.TARGETS))
    too_long: str = "truncate"  # examples longer than the context: truncate | drop
    val_fraction: float = 0.1  # of the conversations (or text), held out for validation
    evaluate: bool = True  # measure the base before and the result after training
    eval_items: int = 50  # validation conversations replied to for exact match / BLEU / ROUGE
    eval_max_new_tokens: int | None = None  # None: from the longest reference (at most 128)

    def validate(self, n_layer: int | None = None) -> None:
        if self.method not in METHODS:
            raise ConfigError(Text("finetune.method", method=self.method))
        if isinstance(self.freeze_layers, bool) or not isinstance(self.freeze_layers, int) or self.freeze_layers < 0:
            raise ConfigError(Text("trainable.freeze", value=self.freeze_layers))
        if n_layer is not None and self.method == "full" and self.freeze_layers >= n_layer:
            raise ConfigError(Text("trainable.freeze_all", freeze=self.freeze_layers, n=n_layer))
        if self.method == "lora":
            lora.check_settings(
                self.lora_rank,
                self.lora_alpha,
                self.lora_dropout,
                self.lora_layers,
                self.lora_targets,
                n_layer if n_layer is not None else 10**9,
            )
        if self.too_long not in ("truncate", "drop"):
            raise ConfigError(Text("sft.too_long_policy", got=self.too_long))
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(Text("trainable.val_fraction", value=self.val_fraction))
        if isinstance(self.eval_items, bool) or not isinstance(self.eval_items, int) or self.eval_items < 1:
            raise ConfigError(Text("model.positive", name="eval_items", value=self.eval_items))

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def parameter_counts(model_cfg: GPTConfig, ft: FinetuneConfig, new_rows: int = 0) -> dict:
    """{"total", "trainable", "trainable_fraction"}: what the UI shows before training starts."""
    C, b, L = model_cfg.n_embd, int(model_cfg.bias), model_cfg.n_layer
    total = param_count(model_cfg)
    shapes = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    if ft.method == "lora":
        layers = ft.lora_layers if ft.lora_layers is not None else range(L)
        adapters = len(list(layers)) * sum(ft.lora_rank * sum(shapes[t]) for t in ft.lora_targets)
        total += adapters
        trainable = adapters + new_rows * C
    else:
        per_block = 2 * (C + b * C) + sum(i * o + b * o for i, o in shapes.values())
        trainable = total - min(ft.freeze_layers, L) * per_block
    return {"total": total, "trainable": trainable, "trainable_fraction": trainable / total}


# ----------------------------------------------------------------------------------------------------------
# Trainable models


class PlainGPT:
    """A fresh GPT whose every parameter learns (pretraining)."""

    running = "status.training"  # the status line's message key: "Training on cpu."
    running_in_slices = "status.training_slices"  # "Training on cuda in slices of 45 s." (core/slices.py)
    reports_perplexity = False  # fine-tuning logs perplexity beside the validation loss

    def __init__(self, model_cfg: GPTConfig):
        self.model_cfg = model_cfg

    def build(self) -> GPT:
        return GPT(self.model_cfg)

    def optimizer_groups(self, model: GPT, weight_decay: float, split_hidden: bool) -> list[dict]:
        return model.optimizer_groups(weight_decay, split_hidden=split_hidden)

    def trainable_count(self, model: GPT) -> int:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    def checkpoint_weights(self, model: GPT) -> dict[str, torch.Tensor]:
        """Plain GPT weights for model.safetensors."""
        return runs.model_tensors(model)

    def extra_tensors(self, model: GPT) -> dict[str, torch.Tensor]:
        """What a checkpoint needs beyond the plain weights to resume exactly (kept with the trainer state)."""
        return {}

    def restore(self, model: GPT, weights: dict, trainer_tensors: dict, source: str) -> None:
        """Load a checkpoint's weights (and extra tensors) into a model made by build()."""
        runs.load_model_weights(model, weights, source)


class FineTuned(PlainGPT):
    """The run's base weights with the fine-tuning method applied: the first blocks frozen, or LoRA adapters
    (then only the adapters, and the embedding rows of tokens the base never had, learn)."""

    running = "status.finetuning"
    running_in_slices = "status.finetuning_slices"
    reports_perplexity = True

    def __init__(self, model_cfg: GPTConfig, run_dir, settings: dict):
        super().__init__(model_cfg)
        self.base_path = Path(run_dir) / BASE_FILE
        self.ft = FinetuneConfig.from_dict(settings)
        self.new_token_ids = list(settings.get("new_token_ids") or [])

    def build(self) -> GPT:
        model = GPT(self.model_cfg)
        runs.load_model_weights(model, runs.load_tensors(self.base_path), str(self.base_path))
        ft = self.ft
        if ft.method == "lora":
            lora.apply_lora(model, ft.lora_rank, ft.lora_alpha, ft.lora_dropout, ft.lora_layers, ft.lora_targets)
            if self.new_token_ids:  # markers and new characters must learn their embeddings; the rest stays
                wte = model.transformer.wte.weight
                rows = torch.zeros(wte.shape[0], 1, dtype=wte.dtype)
                rows[torch.tensor(self.new_token_ids, dtype=torch.long)] = 1.0
                wte.requires_grad_(True)
                wte.register_hook(lambda g, rows=rows: g * rows.to(g.device))
                model.new_token_rows = rows
        else:
            for block in model.transformer.h[: ft.freeze_layers]:
                block.requires_grad_(False)
        return model

    def optimizer_groups(self, model: GPT, weight_decay: float, split_hidden: bool) -> list[dict]:
        """As GPT.optimizer_groups (AdamW for every group), except that under LoRA the embedding (only its new
        rows learn) never decays: decay would shrink the frozen rows."""
        groups = model.optimizer_groups(weight_decay)
        if lora.lora_modules(model):
            wte = model.transformer.wte.weight
            if any(p is wte for p in groups[0]["params"]):
                groups[0]["params"] = [p for p in groups[0]["params"] if p is not wte]
                groups[1]["params"].append(wte)
        return groups

    def trainable_count(self, model: GPT) -> int:
        """Parameters that learn; under LoRA with new tokens, only the embedding's new rows count."""
        n = super().trainable_count(model)
        rows = getattr(model, "new_token_rows", None)
        if rows is not None:
            wte = model.transformer.wte.weight
            n += int(rows.sum()) * wte.shape[1] - wte.numel()
        return n

    def checkpoint_weights(self, model: GPT) -> dict[str, torch.Tensor]:
        """Plain GPT weights, LoRA merged in: every checkpoint loads as an ordinary GPT."""
        return lora.merged_tensors(model) if lora.lora_modules(model) else runs.model_tensors(model)

    def extra_tensors(self, model: GPT) -> dict[str, torch.Tensor]:
        return {f"lora.{k}": v for k, v in lora.adapter_tensors(model).items()}

    def restore(self, model: GPT, weights: dict, trainer_tensors: dict, source: str) -> None:
        """Full fine-tuning: the plain weights. LoRA: the adapters, and every weight the adapters do not wrap
        (the base of a wrapped projection stays the base; the checkpoint holds it merged)."""
        adapters = lora.lora_modules(model)
        if not adapters:
            runs.load_model_weights(model, weights, source)
            return
        lora.load_adapter_tensors(
            model, {k[len("lora.") :]: v for k, v in trainer_tensors.items() if k.startswith("lora.")}, source
        )
        state = model.state_dict()
        with torch.no_grad():
            for key, value in weights.items():
                owner, leaf = key.rsplit(".", 1)
                if owner in adapters:
                    if leaf == "weight":
                        continue
                    key = f"{owner}.base.{leaf}"
                if key not in state or state[key].shape != value.shape:
                    raise CheckpointError(Text("trainable.mismatch", source=source, key=key))
                state[key].copy_(value)


def for_run(run_dir, config: dict) -> PlainGPT:
    """What a run directory's config.json says to train: a fine-tuning run (a "finetune" section) trains its
    base weights, any other run a fresh GPT."""
    try:
        model_cfg = GPTConfig.from_dict(config["model"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(Text("train.config_bad", path=str(Path(run_dir) / runs.CONFIG), reason=str(e))) from None
    settings = config.get("finetune")
    return FineTuned(model_cfg, run_dir, settings) if settings else PlainGPT(model_cfg)
