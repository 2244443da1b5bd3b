"""Plotly figures of the Generate and Look inside tabs: probability bars, attention heatmaps and the logit lens.
Pure functions of plain data (lists, numpy arrays): no model, no Gradio, so they are cheap to call on every
slider move and easy to test. Their text uses the symbols font (playground/fonts.py), so "␠" shows as itself."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from playground.fonts import CHART_FONT

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
        font=dict(family=CHART_FONT),
        hoverlabel=dict(font=dict(family=CHART_FONT)),
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


def alternatives_figure(
    alternatives: list[tuple[str, float]], chosen: str | None = None, title: str = "", fixed_scale: bool = False
) -> go.Figure:
    """Horizontal bars of the most likely tokens at one position (text already decoded); the token that was
    actually chosen is highlighted. fixed_scale: the axis always runs to 100% (for figures compared in turn)."""
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
    top = 1.0 if fixed_scale else min(1.0, 1.2 * max(probs, default=1.0)) or 1.0
    fig.update_xaxes(range=[0, top], tickformat=".0%")
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
    return _layout(fig, title, 110 + 24 * max(1, len(y)))


# ----------------------------------------------------------------------------------------------------------
# Attention heatmaps


def masked(att) -> np.ndarray:
    """A (T, T) attention map with the causal mask (keys after the query) as NaN, so it shows blank."""
    a = np.array(att, dtype=np.float64)
    T = a.shape[-1]
    a[np.triu_indices(T, k=1, m=T)] = np.nan
    return a


def token_axis(labels: list[str]) -> list[str]:
    """Category names for an axis of tokens: each token made visible ("␠"), repeats kept apart by zero-width
    spaces. On a category axis plotly thins the tick labels to the room there is, and zooming in brings every
    one back."""
    return _unique([visible(s) for s in labels])


def _token_axes(fig: go.Figure, names: list[str], size: int, **where) -> None:
    tick = dict(type="category", tickfont=dict(size=size))
    fig.update_xaxes(categoryarray=names, tickangle=-60 if len(names) > 12 else 0, **tick, **where)
    fig.update_yaxes(categoryarray=names, autorange="reversed", **tick, **where)


LOOKS_AT = "{query} looks at {target}: {weight}"


def _heatmap(att: np.ndarray, names: list[str], looks_at: str, positions: bool, prefix: str = "") -> go.Heatmap:
    """One heatmap on token axes; z as nested lists with None in the masked cells (plain JSON, blank in the
    chart). The hover says which token looks at which and how much (`looks_at`, with {query}, {target} and
    {weight}); with `positions` each cell also carries the two positions, so that repeated tokens are told apart
    (for one head: a grid of many heads would multiply the data sent)."""
    T = len(names)
    z = [[None if math.isnan(v) else round(v, 4) for v in row] for row in masked(att).tolist()]
    gap = 1 if T <= 40 else 0
    if positions:
        query, target = "“%{y}” #%{customdata[0]}", "“%{x}” #%{customdata[1]}"
        extra = dict(customdata=[[[i + 1, j + 1] for j in range(T)] for i in range(T)])
    else:
        query, target, extra = "“%{y}”", "“%{x}”", {}
    hover = prefix + looks_at.format(query=query, target=target, weight="%{z:.1%}")
    return go.Heatmap(
        z=z,
        x=names,
        y=names,
        coloraxis="coloraxis",
        hoverongaps=False,
        xgap=gap,
        ygap=gap,
        hovertemplate=hover + "<extra></extra>",
        **extra,
    )


def attention_figure(
    maps,
    labels: list[str],
    head: int | None = None,
    title: str = "",
    x_title: str = "key (attended to)",
    y_title: str = "query (the token looking)",
    head_title: str = "head {n}",
    weight: str = "weight",
    looks_at: str = LOOKS_AT,
    height: int | None = None,
) -> go.Figure:
    """Heatmap of one layer's attention: `maps` is (n_head, T, T) with queries as rows and keys as columns.
    head=None draws every head in a grid of small heatmaps; the upper triangle (future tokens, masked out)
    is left blank. `looks_at` words the hover ({query}, {target}, {weight}). `height`: the figure's, in pixels,
    instead of one that grows with the number of tokens."""
    maps = np.asarray(maps, dtype=np.float64)
    n_head, T = maps.shape[0], maps.shape[-1]
    if len(labels) != T:
        raise ValueError(f"{len(labels)} labels for {T} tokens")
    colorbar = dict(colorscale="Greens", cmin=0, cmax=1, colorbar=dict(title=weight, thickness=12))
    if head is not None:
        names = token_axis(labels)
        fig = go.Figure(_heatmap(maps[head], names, looks_at, positions=True))
        _token_axes(fig, names, 11 if T <= 48 else 10)
        fig.update_xaxes(title=x_title, side="bottom")
        fig.update_yaxes(title=y_title)
        fig.update_layout(coloraxis=colorbar, plot_bgcolor=MASKED)
        return _layout(fig, title, height or min(900, max(380, 120 + 12 * T)))
    cols = min(4, n_head)
    rows = math.ceil(n_head / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[head_title.format(n=h + 1) for h in range(n_head)],
        horizontal_spacing=0.04,
        vertical_spacing=0.08 if rows > 1 else 0.1,
    )
    names = token_axis(labels)
    for h in range(n_head):
        r, c = divmod(h, cols)
        trace = _heatmap(maps[h], names, looks_at, positions=False, prefix=f"{head_title.format(n=h + 1)}: ")
        fig.add_trace(trace, row=r + 1, col=c + 1)
        _token_axes(fig, names, 9, row=r + 1, col=c + 1)
    fig.update_layout(coloraxis=colorbar, plot_bgcolor=MASKED)
    return _layout(fig, title, height or 60 + 280 * rows)


# ----------------------------------------------------------------------------------------------------------
# The logit lens


def lens_figure(
    inputs: list[str],
    layers: list[str],
    tokens: list[list[str]],
    probs: list[list[float]],
    hover: list[list[str]],
    title: str = "",
    x_title: str = "the token just read (each cell predicts the one after it)",
    weight: str = "probability",
) -> go.Figure:
    """The logit lens as a grid: a row per layer (the embeddings at the bottom, the model's output at the top),
    a column per position of the prompt; each cell names the token that layer would predict next (its text)
    and how sure it is (its colour). `inputs` label the columns, `layers` the rows; `tokens`, `probs` and
    `hover` are [layer][position] (already visible: "␠" for a space)."""
    names = token_axis(inputs)
    fig = go.Figure(
        go.Heatmap(
            z=[[round(float(p), 4) for p in row] for row in probs],
            x=names,
            y=layers,
            text=tokens,
            texttemplate="%{text}",
            textfont=dict(size=12, family=CHART_FONT),
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
            colorscale="Greens",
            zmin=0,
            zmax=1,
            xgap=2,
            ygap=2,
            colorbar=dict(title=weight, thickness=12, tickformat=".0%"),
        )
    )
    fig.update_xaxes(
        type="category", categoryarray=names, title=x_title, tickangle=-60 if len(inputs) > 16 else 0, side="bottom"
    )
    fig.update_yaxes(type="category", categoryarray=layers)
    return _layout(fig, title, 140 + 40 * len(layers))
