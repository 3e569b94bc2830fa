"""examples.png with non-Latin text (issue 14): every glyph found in some installed font, and
text wrapped and clipped to its cell."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from daer_core.evaluation import plots

CAPTIONS = ["一只红色的圆形在蓝色正方形的左边", "两只小猫在草地上玩耍，旁边有一棵大树",
            "a small red circle left of a blue square", "检索文本与图像"]


def _cjk_font(path, chars: str) -> None:
    """A tiny TrueType font with a square glyph for each of ``chars`` (stands in for a CJK
    font such as Noto Sans CJK, which this machine may not have)."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    names = [".notdef"] + [f"uni{ord(c):04X}" for c in chars]
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder(names)
    fb.setupCharacterMap({ord(c): f"uni{ord(c):04X}" for c in chars})
    glyphs = {}
    for name in names:
        pen = TTGlyphPen(None)
        pen.moveTo((100, 0)), pen.lineTo((100, 800)), pen.lineTo((900, 800))
        pen.lineTo((900, 0)), pen.closePath()
        glyphs[name] = pen.glyph()
    fb.setupGlyf(glyphs)
    fb.setupHorizontalMetrics({n: (1000, 100) for n in names})
    fb.setupHorizontalHeader(ascent=880, descent=-120)
    fb.setupNameTable({"familyName": "Daer Test CJK", "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=880, usWinAscent=880, usWinDescent=120)
    fb.setupPost()
    fb.save(str(path))


def _draw(tmp_path, texts):
    imgs = [Image.new("RGB", (16, 16), (40 * i, 80, 160)) for i in range(len(texts))]
    scores = np.random.default_rng(0).random((len(texts), len(texts)))
    labels = [(i % 2,) for i in range(len(texts))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.plot_retrieval_examples(scores, texts, imgs, labels, ["猫", "circle"],
                                      tmp_path / "examples.png", queries=2, k=2)
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


def test_cjk_captions_are_drawn_with_a_font_that_has_their_glyphs(tmp_path, monkeypatch):
    from matplotlib import font_manager
    chars = "".join(sorted({c for t in CAPTIONS for c in t if ord(c) > 0x2E80} | {"猫"}))
    _cjk_font(tmp_path / "cjk.ttf", chars)
    monkeypatch.setattr(font_manager.fontManager, "ttflist",
                        list(font_manager.fontManager.ttflist))  # restored after the test
    font_manager.fontManager.addfont(str(tmp_path / "cjk.ttf"))
    families, uncovered = plots.font_families(CAPTIONS)
    assert "Daer Test CJK" in families and not uncovered
    assert _draw(tmp_path, CAPTIONS) == []
    # without the fallback the same picture loses glyphs (the bug this guards against)
    monkeypatch.setattr(plots, "font_families", lambda texts: (["DejaVu Sans"], set()))
    assert _draw(tmp_path, CAPTIONS)


def test_text_with_no_font_is_named_once_with_the_package_to_install(tmp_path, caplog):
    families, uncovered = plots.font_families(["\U0001D11E\U0001D11F"])  # musical symbols
    if not uncovered:
        pytest.skip("an installed font covers the probe characters")
    glyph_warnings = _draw(tmp_path, ["\U0001D11E clef", "plain"] * 20)
    assert plots.CJK_FONT_PACKAGE in caplog.text and "examples.png" in caplog.text
    # one clear warning, not one more per glyph drawn (there were ~1,000 for a CJK set)
    assert glyph_warnings == []
    assert caplog.text.count("no installed font has glyphs") == 1


@pytest.mark.parametrize("text", CAPTIONS + ["x" * 200, "word " * 100, ""])
def test_wrapped_text_stays_in_its_cell(text):
    out = plots.wrap_text(text, width=28, max_lines=6)
    lines = out.split("\n") if out else []
    assert len(lines) <= 6
    assert all(sum(plots._width(c) for c in line) <= 28 for line in lines), lines
    if text.strip():
        assert out.replace("\n", "").replace("…", "").replace(" ", "") in text.replace(" ", "")
    cjk = plots.wrap_text(CAPTIONS[1], width=10)
    assert max(len(line) for line in cjk.split("\n")) <= 5  # wide characters count two
