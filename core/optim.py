"""Optimizers: AdamW, and Muon for the hidden weight matrices.

Muon (Keller Jordan, 2024; used by the modded-nanoGPT speed runs) takes SGD momentum and replaces each 2-D
update by its nearest orthogonal matrix (computed with a few Newton-Schulz iterations), so every direction
of the weight moves at a similar rate. It trains the hidden matrices of a small GPT in fewer steps than
AdamW. Embeddings, the (tied) output layer, biases and LayerNorm gains stay with AdamW.
"""

from __future__ import annotations

import torch

OPTIMIZERS = ("adamw", "muon")


def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately orthogonal matrices with g's row and column spaces (the quintic iteration of Muon).
    g is (m, n) or a batch (k, m, n) of same-shaped matrices, done in one go."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.float()
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        s = x @ x.mT
        x = a * x + (b * s + c * s @ s) @ x
    return x.mT if transposed else x


class Muon(torch.optim.Optimizer):
    """Momentum, orthogonalised per matrix, scaled so the update's RMS matches AdamW's (0.2 * sqrt(max dim))
    and can share AdamW's learning rate and weight decay. Matrices of the same shape (one per layer) are
    orthogonalised together, as a batch: on a CPU the many small products otherwise cost more than the math."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.95,
        weight_decay: float = 0.0,
        nesterov: bool = True,
        ns_steps: int = 5,
    ):
        super().__init__(
            params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, ns_steps=ns_steps)
        )

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            by_shape: dict[tuple, list] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(tuple(p.shape), []).append(p)
            for shape, params in by_shape.items():
                grads = []
                for p in params:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    buf = state["momentum_buffer"]
                    buf.lerp_(p.grad, 1 - group["momentum"])
                    grads.append(p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf)
                updates = newton_schulz(torch.stack(grads), group["ns_steps"])
                scale = 0.2 * max(shape[0], shape[1]) ** 0.5
                for p, update in zip(params, updates.unbind(0)):
                    if group["weight_decay"]:
                        p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update.to(p.dtype), alpha=-group["lr"] * scale)


class Combined:
    """Several optimizers stepped together, looking like one to the trainer (param_groups, state_dict)."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self):
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True):
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state):
        parts = state.get("optimizers") if isinstance(state, dict) else None
        if not isinstance(parts, list) or len(parts) != len(self.optimizers):
            raise ValueError("the saved optimizer state is for a different optimizer")
        for o, s in zip(self.optimizers, parts):
            o.load_state_dict(s)


def make_optimizer(groups: list[dict], name: str, lr: float, betas: tuple[float, float], device: torch.device):
    """AdamW on all groups, or Muon on the hidden 2-D weights (groups marked "hidden": True) + AdamW on the rest."""
    fused = device.type in ("cuda", "cpu")
    if name == "adamw":
        groups = [{k: v for k, v in g.items() if k != "hidden"} for g in groups]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)
    if name != "muon":
        raise ValueError(f"unknown optimizer {name!r}")
    hidden = [{k: v for k, v in g.items() if k != "hidden"} for g in groups if g.get("hidden")]
    rest = [{k: v for k, v in g.items() if k != "hidden"} for g in groups if not g.get("hidden")]
    optimizers = [torch.optim.AdamW([g for g in rest if g["params"]], lr=lr, betas=betas, fused=fused)]
    if any(g["params"] for g in hidden):
        optimizers.insert(0, Muon([g for g in hidden if g["params"]], lr=lr))
    return Combined(*optimizers)
