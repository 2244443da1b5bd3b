"""Plotly figures of the Train tab, built from metrics.jsonl records."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from playground.i18n import t

TRAIN_COLOR, VAL_COLOR = "#16a34a", "#ea580c"


def ema(values: list[float], smoothing: float) -> list[float]:
    """Exponential moving average, debiased like TensorBoard's, so the first points are not pulled to 0."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = smoothing * avg + (1 - smoothing) * v
        out.append(avg / (1 - smoothing**i) if smoothing < 1 else v)
    return out


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=50, r=20, t=50, b=40),
        template="plotly_white",
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
    )
    return fig


def loss_figure(records: list[dict], smoothing: float = 0.6, log_scale: bool = False, lang: str = "en") -> go.Figure:
    """Train loss (raw, faint, and smoothed) and validation loss (markers) by step."""
    fig = go.Figure()
    train = [r for r in records if r.get("train_loss") is not None]
    val = [r for r in records if r.get("val_loss") is not None]
    if train:
        steps = [r["step"] for r in train]
        losses = [r["train_loss"] for r in train]
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=losses,
                mode="lines",
                name=t("train.chart.train_raw", lang),
                opacity=0.3,
                line=dict(color=TRAIN_COLOR, width=1),
                showlegend=smoothing > 0,
            )
        )
        if smoothing > 0:
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=ema(losses, smoothing),
                    mode="lines",
                    name=t("train.chart.train", lang),
                    line=dict(color=TRAIN_COLOR, width=2),
                )
            )
    if val:
        fig.add_trace(
            go.Scatter(
                x=[r["step"] for r in val],
                y=[r["val_loss"] for r in val],
                mode="lines+markers",
                name=t("train.chart.val", lang),
                line=dict(color=VAL_COLOR, width=2),
            )
        )
    fig.update_xaxes(title=t("train.chart.step", lang))
    fig.update_yaxes(title=t("train.chart.loss_axis", lang), type="log" if log_scale else "linear")
    return _layout(fig, t("train.chart.loss", lang))


def rate_figure(records: list[dict], lang: str = "en") -> go.Figure:
    """Learning rate and throughput by step, side by side."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(t("train.chart.lr", lang), t("train.chart.tps", lang)))
    rows = [r for r in records if r.get("lr") is not None]
    steps = [r["step"] for r in rows]
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=[r["lr"] for r in rows],
            mode="lines",
            name=t("train.chart.lr_trace", lang),
            line=dict(color="#2563eb"),
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=[r.get("tokens_per_sec") for r in rows],
            mode="lines",
            name=t("train.chart.tps_trace", lang),
            line=dict(color="#7c3aed"),
        ),
        row=1,
        col=2,
    )
    fig.update_layout(showlegend=False)
    return _layout(fig, "", height=260)
