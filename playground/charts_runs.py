"""Plotly figures of the Runs tab: several runs' loss curves overlaid in one chart.

Each run gets one colour; its training loss is a solid line and its validation loss a dashed line with
markers (evaluations are sparse, so each one is shown). Clicking a run's entry in the legend hides both of
its curves together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.colors import qualitative

PALETTE = qualitative.D3
TEXT = {  # English defaults; the tab passes the translated words
    "step": "Step",
    "loss": "Loss (nats per token)",
    "bpc": "Bits per character",
    "train": "train",
    "val": "validation",
    "empty": "Pick one or more runs above to overlay their curves.",
    "no_metrics": "The chosen runs have logged nothing yet.",
}


@dataclass
class RunCurves:
    name: str  # shown in the legend
    records: list[dict]  # metrics.jsonl: {"step", "train_loss", "val_loss"?, "val_bpc"?, ...}
    train_bpc_scale: float | None = None  # nats per token -> bits per character on the training split


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def curve_points(curves: RunCurves, bpc: bool = False) -> dict[str, tuple[list, list]]:
    """{"train": (steps, values), "val": (steps, values)} of one run, in nats per token or bits per char.
    In bits per character, validation uses the logged val_bpc; training is converted with the training
    split's tokens-per-character ratio (or left out when the run does not record it)."""
    train_key, val_key = "train_loss", ("val_bpc" if bpc else "val_loss")
    scale = 1.0
    if bpc:
        scale = curves.train_bpc_scale
    out = {"train": ([], []), "val": ([], [])}
    for r in curves.records:
        step = r.get("step")
        if not _finite(step):
            continue
        if scale is not None and _finite(r.get(train_key)):
            out["train"][0].append(step)
            out["train"][1].append(r[train_key] * scale)
        if _finite(r.get(val_key)):
            out["val"][0].append(step)
            out["val"][1].append(r[val_key])
    return out


def loss_overlay(
    runs: list[RunCurves], log_scale: bool = False, bpc: bool = False, text: dict | None = None
) -> go.Figure:
    """One figure with every run's training and validation curves."""
    text = {**TEXT, **(text or {})}
    fig = go.Figure()
    any_points = False
    for i, run in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        points = curve_points(run, bpc)
        styles = {  # training: a thin solid line; validation: dashed, with a marker at each evaluation
            "train": dict(mode="lines", line=dict(color=color, width=1.6), opacity=0.85),
            "val": dict(mode="lines+markers", line=dict(color=color, width=2, dash="dash"),
                        marker=dict(size=7, symbol="circle")),
        }  # fmt: skip
        for split, style in styles.items():
            xs, ys = points[split]
            if not xs:
                continue
            any_points = True
            hover = f"{run.name}<br>{text[split]}: %{{y:.4f}} @ %{{x}}<extra></extra>"
            fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{run.name} · {text[split]}", legendgroup=f"run{i}",
                                     hovertemplate=hover, **style))  # fmt: skip
    fig.update_layout(
        template="plotly_white",
        height=440,
        margin=dict(l=60, r=20, t=30, b=50),
        legend=dict(orientation="h", yanchor="top", y=-0.15, groupclick="togglegroup"),
        xaxis_title=text["step"],
        yaxis_title=text["bpc"] if bpc else text["loss"],
        yaxis_type="log" if log_scale else "linear",
        hovermode="closest",
    )
    if not any_points:
        fig.add_annotation(
            text=text["no_metrics"] if runs else text["empty"],
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            font=dict(size=15, color="#666"),
        )
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return fig
