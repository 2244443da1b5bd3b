"""Builds newleaf-symbols.woff2, the small font that draws the token symbols of the charts and token views
(␠ for a space, ⏎ for a line break, ⇥ for a tab, ∅ for an empty token…), which many systems' fonts lack (they
show an empty box instead). Run once by hand; the result is committed, so nothing is downloaded or built when
the app runs:

    apt-get download fonts-noto-core && dpkg-deb -x fonts-noto-core_*.deb noto
    python assets/fonts/make_fonts.py noto/usr/share/fonts/truetype/noto

It keeps only these characters of two SIL Open Font License fonts, Noto Sans Symbols 2 (the Control Pictures
block and ⏎) and Noto Sans Math (arrows, ∅), merges them and names the result "Newleaf Symbols" (a modified
font takes a name of its own; OFL.txt beside it is the licence).
"""

import sys
import tempfile
from pathlib import Path

from fontTools import subset
from fontTools.merge import Merger
from fontTools.ttLib import TTFont

HERE = Path(__file__).resolve().parent
FAMILY = "Newleaf Symbols"
SOURCES = {
    "NotoSansSymbols2-Regular.ttf": [*range(0x2400, 0x2427), 0x23CE],  # ␀…␦ (␠ is U+2420), ⏎
    "NotoSansMath-Regular.ttf": [0x2190, 0x2191, 0x2192, 0x2193, 0x21B5, 0x21E4, 0x21E5, 0x2205],  # ←↑→↓ ↵ ⇤⇥ ∅
}


def _subset(path: Path, codepoints: list[int], out: Path) -> None:
    options = subset.Options()
    options.layout_features = []  # no shaping needed for single symbols
    options.drop_tables += ["MATH", "GSUB", "GPOS", "GDEF", "DSIG"]
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6]
    options.hinting = False
    font = subset.load_font(str(path), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=codepoints)
    subsetter.subset(font)
    subset.save_font(font, str(out), options)


def _rename(font: TTFont) -> None:
    for rec in font["name"].names:
        if rec.nameID in (1, 4):
            rec.string = FAMILY
        elif rec.nameID == 3:
            rec.string = f"{FAMILY};subset of Noto Sans Symbols 2 and Noto Sans Math"
        elif rec.nameID == 6:
            rec.string = FAMILY.replace(" ", "")


def main(noto_dir: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for name, codepoints in SOURCES.items():
            part = Path(tmp) / name
            _subset(Path(noto_dir) / name, codepoints, part)
            parts.append(str(part))
        merged = Merger().merge(parts)
    _rename(merged)
    merged.flavor = "woff2"
    merged.save(HERE / "newleaf-symbols.woff2")
    cmap = merged.getBestCmap()
    wanted = [c for cps in SOURCES.values() for c in cps]
    missing = [hex(c) for c in wanted if c not in cmap]
    assert not missing, missing
    print(f"newleaf-symbols.woff2: {len(cmap)} characters, {(HERE / 'newleaf-symbols.woff2').stat().st_size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
