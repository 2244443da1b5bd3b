"""Plotly figures of the Generate and Attention tabs: probability bars and attention heatmaps. Pure functions
of plain data (lists, numpy arrays): no model, no Gradio, so they are cheap to call on every slider move
and easy to test."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

GREEN, GREY, ORANGE = "#2e9d5b", "#b8c2bb", "#e07b39"
MASKED = "#d5dad6"  # the background the causal mask's blank cells show
_WS = {" ": "␠", "\n": "⏎", "\t": "⇥", "\r": "␍"}


def visible(text: str, spaces: bool = True) -> str:
    """A token's text with its whitespace made visible (a space is "␠", a newline "⏎"); spaces=False keeps
    spaces as they are (for running text, where only line breaks would vanish)."""
    if text == "":
        return "∅"
    return "".join(_WS.get(c, c) if spaces or c != " " else c for c in text)


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0.01, font=dict(size=14)),
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        template="plotly_white",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
    )
    return fig


def _unique(labels: list[str]) -> list[str]:
    """Category axes merge equal labels; distinct decodings can still look alike, so pad repeats with
    zero-width spaces to keep one bar per token."""
    seen: dict[str, int] = {}
    out = []
    for s in labels:
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.append(s + "\u200b" * n)
    return out


# ----------------------------------------------------------------------------------------------------------
# Probability bars


def alternatives_figure(alternatives: list[tuple[str, float]], chosen: str | None = None, title: str = "") -> go.Figure:
    """Horizontal bars of the most likely tokens at one position (text already decoded); the token that was
    actually chosen is highlighted."""
    labels = _unique([visible(t) for t, _ in alternatives])
    probs = [float(p) for _, p in alternatives]
    colors = [ORANGE if t == chosen else GREEN for t, _ in alternatives]
    fig = go.Figure(
        go.Bar(
            x=probs,
            y=labels,
            orientation="h",
            marker_color=colors,
            text=[f"{p:.1%}" for p in probs],
            textposition="auto",
            hovertemplate="%{y}: %{x:.2%}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(range=[0, min(1.0, 1.2 * max(probs, default=1.0)) or 1.0], tickformat=".0%")
    return _layout(fig, title, 80 + 24 * max(1, len(labels)))


def next_token_figure(
    labels: list[str],
    raw_probs: list[float],
    probs: list[float],
    title: str = "",
    raw_name: str = "softmax(logits)",
    name: str = "after temperature / top-k / top-p / min-p",
) -> go.Figure:
    """The next token's candidates: the model's own distribution (grey) next to the one the sampler would
    draw from after temperature and the cut-offs (green). Bars in the order given (most likely first)."""
    y = _unique([visible(t) for t in labels])
    fig = go.Figure(
        [
            go.Bar(
                x=[float(p) for p in raw_probs],
                y=y,
                orientation="h",
                name=raw_name,
                marker_color=GREY,
                hovertemplate="%{y}: %{x:.2%}<extra>" + raw_name + "</extra>",
            ),
            go.Bar(
                x=[float(p) for p in probs],
                y=y,
                orientation="h",
                name=name,
                marker_color=GREEN,
                text=[f"{p:.1%}" if p > 0 else "cut" for p in probs],
                textposition="outside",
                hovertemplate="%{y}: %{x:.2%}<extra></extra>",
            ),
        ]
    )
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(range=[0, 1.08], tickformat=".0%")
    return _layout(fig, title, 120 + 30 * max(1, len(y)))


# ----------------------------------------------------------------------------------------------------------
# Attention heatmaps


def masked(att) -> np.ndarray:
    """A (T, T) attention map with the causal mask (keys after the query) as NaN, so it shows blank."""
    a = np.array(att, dtype=np.float64)
    T = a.shape[-1]
    a[np.triu_indices(T, k=1, m=T)] = np.nan
    return a


def _ticks(labels: list[str], most: int = 48) -> dict:
    step = max(1, math.ceil(len(labels) / most))
    idx = list(range(0, len(labels), step))
    return dict(
        tickmode="array",
        tickvals=[i + 1 for i in idx],
        ticktext=[visible(labels[i]) for i in idx],
        tickfont=dict(size=10 if len(labels) <= 32 else 8),
    )


def _heatmap(att: np.ndarray, labels: list[str], hover_labels: bool) -> go.Heatmap:
    """One heatmap; z as nested lists with None in the masked cells (plain JSON, blank in the chart)."""
    T = len(labels)
    z = [[None if math.isnan(v) else round(v, 4) for v in row] for row in masked(att).tolist()]
    gap = 1 if T <= 40 else 0
    common = dict(
        z=z,
        x=list(range(1, T + 1)),
        y=list(range(1, T + 1)),
        coloraxis="coloraxis",
        hoverongaps=False,
        xgap=gap,
        ygap=gap,
    )
    if not hover_labels:  # a grid of many heads: token names in the hover would multiply the data sent
        return go.Heatmap(**common, hovertemplate="#%{y} → #%{x}: %{z:.3f}<extra></extra>")
    shown = [visible(s) for s in labels]
    hover = [[f"#{i + 1} {shown[i]} → #{j + 1} {shown[j]}" for j in range(T)] for i in range(T)]
    return go.Heatmap(**common, customdata=hover, hovertemplate="%{customdata}: %{z:.3f}<extra></extra>")


def attention_figure(
    maps,
    labels: list[str],
    head: int | None = None,
    title: str = "",
    x_title: str = "key (attended to)",
    y_title: str = "query (the token looking)",
    head_title: str = "head {n}",
    weight: str = "weight",
) -> go.Figure:
    """Heatmap of one layer's attention: `maps` is (n_head, T, T) with queries as rows and keys as columns.
    head=None draws every head in a grid of small heatmaps; the upper triangle (future tokens, masked out)
    is left blank."""
    maps = np.asarray(maps, dtype=np.float64)
    n_head, T = maps.shape[0], maps.shape[-1]
    if len(labels) != T:
        raise ValueError(f"{len(labels)} labels for {T} tokens")
    colorbar = dict(colorscale="Greens", cmin=0, cmax=1, colorbar=dict(title=weight, thickness=12))
    if head is not None:
        fig = go.Figure(_heatmap(maps[head], labels, True))
        fig.update_xaxes(title=x_title, side="bottom", tickangle=-60 if T > 12 else 0, **_ticks(labels))
        fig.update_yaxes(title=y_title, autorange="reversed", **_ticks(labels))
        fig.update_layout(coloraxis=colorbar, plot_bgcolor=MASKED)
        size = min(760, max(360, 60 + 22 * T))
        return _layout(fig, title, size)
    cols = min(4, n_head)
    rows = math.ceil(n_head / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[head_title.format(n=h + 1) for h in range(n_head)],
        horizontal_spacing=0.04,
        vertical_spacing=0.08 if rows > 1 else 0.1,
    )
    small = _ticks(labels, most=12)
    for h in range(n_head):
        r, c = divmod(h, cols)
        fig.add_trace(_heatmap(maps[h], labels, False), row=r + 1, col=c + 1)
        fig.update_xaxes(row=r + 1, col=c + 1, tickangle=-60 if T > 6 else 0, **small)
        fig.update_yaxes(row=r + 1, col=c + 1, autorange="reversed", **small)
    fig.update_layout(coloraxis=colorbar, plot_bgcolor=MASKED)
    return _layout(fig, title, 60 + 260 * rows)
