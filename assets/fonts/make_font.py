"""Makes DejaVuSans-charts.ttf, the font compiled into `asc` for its PNG charts (src/train/plot.rs).

    python3 assets/fonts/make_font.py /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
        assets/fonts/DejaVuSans-charts.ttf

Needs fontTools (pip install fonttools); the crate's build never runs it. From DejaVu Sans 2.37
(Debian's fonts-dejavu-core) it

* keeps the characters a chart may write (Latin, Latin-1, Latin Extended-A, Greek, punctuation,
  a few arrows and maths signs) and the legacy `kern` table, and drops hinting (ab_glyph ignores
  it): 760 kB become 68 kB;
* replaces accented letters built from components by plain outlines, and gives every glyph whose
  ink starts right of its origin a one-point contour at x = 0. The point has no area, so it draws
  nothing, but the glyph's bounds now start at its origin. plotters 0.3.7's `ab_glyph` text
  renderer places a glyph's bounding box, not its origin, at the pen position: with the original
  font every letter is drawn its left side bearing too far left ("validati on m acro").

The name table, with the licence (LICENSE beside this file), is kept whole.
"""
import sys

from fontTools import subset
from fontTools.pens.recordingPen import DecomposingRecordingPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTFont
from fontTools.ttLib.tables._g_l_y_f import GlyphCoordinates

RANGES = [
    (0x20, 0x7E),
    (0xA0, 0x17F),
    (0x391, 0x3C9),
    (0x2010, 0x2027),
    (0x2030, 0x203A),
    (0x2190, 0x2193),
    (0x2212, 0x2212),
    (0x2248, 0x2248),
    (0x2264, 0x2265),
    (0xFFFD, 0xFFFD),
]


def main(src, dst):
    font = TTFont(src, recalcTimestamp=False)
    opts = subset.Options()
    opts.layout_features = []
    opts.legacy_kern = True
    opts.hinting = False
    opts.name_IDs = ["*"]
    opts.name_languages = ["*"]
    opts.drop_tables += ["MATH", "FFTM"]
    sub = subset.Subsetter(opts)
    sub.populate(unicodes=[u for a, b in RANGES for u in range(a, b + 1)])
    sub.subset(font)
    glyf, hmtx, glyphs = font["glyf"], font["hmtx"], font.getGlyphSet()
    for name in font.getGlyphOrder():
        g = glyf[name]
        if g.numberOfContours == 0:
            continue
        if g.isComposite():
            flat = DecomposingRecordingPen(glyphs)
            glyphs[name].draw(flat)
            pen = TTGlyphPen(None)
            flat.replay(pen)
            g = glyf[name] = pen.glyph()
        g.recalcBounds(glyf)
        if g.xMin > 0:
            g.coordinates = GlyphCoordinates(list(g.coordinates) + [(0, g.yMin)])
            g.endPtsOfContours.append(len(g.coordinates) - 1)
            g.flags.append(1)  # on the curve
            g.numberOfContours += 1
            g.recalcBounds(glyf)
        hmtx[name] = (hmtx[name][0], g.xMin)
    font.save(dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
