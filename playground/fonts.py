"""The symbols font: the charts and token views write a space as "␠", a line break as "⏎", a tab as "⇥", an empty
token as "∅", and many systems' fonts have no glyph for them (the browser shows an empty box). The app ships
"Newleaf Symbols" (assets/fonts/: a few kilobytes cut from two OFL Noto fonts, with their licence) and puts it
first in every font list; its unicode-range limits it to those symbols, so all other text keeps the theme's font.
The font travels inside the page's CSS as a data URL: nothing is fetched from anywhere when the page loads.
"""

from __future__ import annotations

import base64
from pathlib import Path

FAMILY = "Newleaf Symbols"
FONT_FILE = Path(__file__).resolve().parents[1] / "assets" / "fonts" / "newleaf-symbols.woff2"
# (unicode-range, size-adjust): ←↑→↓ ↵ ⇤⇥ ∅ ⏎ as they are; the Control Pictures block (␀…␦; ␠ is U+2420), whose
# glyphs are drawn small within their em square (␠ is a tiny "SP"), enlarged to be read beside the letters
FACES = (("U+2190-2193, U+21B5, U+21E4-21E5, U+2205, U+23CE", "100%"), ("U+2400-2426", "150%"))
# plotly's own default list, after ours: SVG text takes its font from the figure, not from the page's CSS
CHART_FONT = f'"{FAMILY}", "Open Sans", verdana, arial, sans-serif'


def font_face_css() -> str:
    """The @font-face rules of the symbols font, the font inlined; empty when the file is missing."""
    if not FONT_FILE.is_file():
        return ""
    data = base64.b64encode(FONT_FILE.read_bytes()).decode("ascii")
    return "".join(
        f'@font-face {{ font-family: "{FAMILY}"; src: url(data:font/woff2;base64,{data}) format("woff2"); '
        f"unicode-range: {ranges}; size-adjust: {size}; font-display: block; }}\n"
        for ranges, size in FACES
    )
