"""The figure convention: labels placed apart, token views on a stated scale from zero, one
signed colour scale, colour bars titled clear of their ticks, no negative zeros."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from helpers.book import display
from helpers.book.figures.common import LOG_AXIS, place_labels
from helpers.book.figures.patching import patching_heatmaps
from helpers.book.summaries.prompt import agreement
from helpers.methods.patching import PatchResult


def label_boxes(fig: go.Figure, x, y, height: int, font_size: int = 11):
    """Each placed annotation's text box in the same pixel estimate place_labels uses."""
    from helpers.book.figures.common import PLOT_AREA

    def px(v, size, flip):
        v = np.asarray(v, dtype=float)
        low, high = v.min(), v.max()
        pad = 0.05 * (high - low or 1.0)
        p = (v - low + pad) / (high - low + 2 * pad) * size
        return size - p if flip else p

    xs, ys = px(x, PLOT_AREA[0], False), px(y, height - 190, True)
    boxes = []
    for a in fig.layout.annotations:
        i = int(np.argmin(np.abs(np.asarray(x) - a.x) + np.abs(np.asarray(y) - a.y)))
        w, h = 0.62 * font_size * len(a.text) + 8, font_size + 8
        cx = xs[i] + a.ax + np.sign(a.ax) * w / 2
        boxes.append((cx - w / 2, ys[i] + a.ay - h / 2, cx + w / 2, ys[i] + a.ay + h / 2))
    return boxes


def test_labels_of_a_tight_cluster_never_share_a_box():
    """Twenty points on one spot: each placed label gets its own box, the rest are left to the hover."""
    x = np.concatenate([np.full(20, 50.0), np.linspace(0, 100, 50)])
    y = np.concatenate([np.full(20, 0.5), np.linspace(-1, 1, 50)])
    fig = go.Figure()
    placed = place_labels(fig, x, y, [f"token {i}" for i in range(len(x))], range(20), 460)
    assert 4 <= placed < 20 and len(fig.layout.annotations) == placed
    boxes = label_boxes(fig, x, y, 460)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_token_views_share_a_stated_scale_centred_on_zero(monkeypatch):
    shown = []
    monkeypatch.setattr(display, "display", lambda obj, **kw: shown.append(obj.data))
    monkeypatch.setattr(display, "in_book", lambda: True)
    scale = display.show_tokens(["a", "b"], [-0.17, 7.8], label="L3N50 activation")
    assert scale == pytest.approx(7.8)
    html = shown[-1]
    assert '"minValue": -7.8' in html and '"maxValue": 7.8' in html, "GELU's -0.17 must not be painted like the peak"
    assert 'class="token-legend"' in html and "-7.8" in html and "7.8 (white: 0)" in html
    display.show_tokens(["c"], [0.5], scale=scale)
    assert '"maxValue": 7.8' in shown[-1], "a later view keeps the earlier scale"


def test_tables_and_phrases_never_print_a_negative_zero(monkeypatch):
    shown = []
    monkeypatch.setattr(display, "display", lambda obj, **kw: shown.append(obj))
    display.show_table(pd.DataFrame({"x": [-1e-6, 0.25], "n": [3, 4]}))
    html = shown[-1].to_html()
    assert "-0.000" not in html and "0.000" in html and "0.250" in html and ">3<" in html
    assert format(-1e-6, "z.3f") == "0.000", "the pages' glue format specs use z"
    assert agreement(0.0) == "exactly" and agreement(3.1e-7) == "to within 3.1e-07"


def test_table_headers_are_words_and_tokens_show_unprintable_characters_by_code_point(monkeypatch):
    from helpers.core.names import show_token

    shown = []
    monkeypatch.setattr(display, "display", lambda obj, **kw: shown.append(obj))
    display.show_table(pd.DataFrame({"n_tokens": [3], "max_value": [0.5]}))
    html = shown[-1].to_html()
    assert "n tokens" in html and "max value" in html and "n_tokens" not in html
    display.show_table(pd.DataFrame({"total": ["0.107 [0.104, 0.111]"], "tokens": ["a, b [c], d"]}))
    html = shown[-1].to_html()
    assert "0.107 [0.104,\u00a00.111]" in html, "an interval breaks at most once, before its bracket"
    assert "a, b [c], d" in html, "other text wraps where it likes"
    assert show_token("\x17") == "'⟨U+0017⟩'" and show_token(" an") == "' an'" and show_token("a\nb") == "'a\\nb'"
    assert show_token("'s") == '"\'s"' and "\u200b" not in show_token(" \u200b")


def test_the_pages_glue_floats_without_negative_zeros():
    import re

    from helpers.book.build import ROOT

    for page in (ROOT / "book").glob("*.py"):
        specs = re.findall(r"\{glue:text\}`[a-z_0-9]+:([^`]*)`", page.read_text())
        assert all(s.startswith("z") for s in specs if s[-1] in "f%"), (page.name, specs)


@pytest.mark.parametrize("direction, title", [("sufficiency", "share recovered"), ("necessity", "share destroyed")])
def test_heatmap_colour_bars_say_what_they_show(direction, title):
    result = PatchResult(values=torch.zeros(2, 3), index_axis_names=("layer", "pos"), activation_name="mlp_out", method="activation",
                         direction=direction, positions="each", clean_diff=1.0, corrupted_diff=-1.0)
    fig = patching_heatmaps({"mlp_out": result}, ["a", "b", "c"], "t")
    bar = fig.layout.coloraxis.colorbar
    assert bar.title.text == title and bar.title.side == "right"


def test_log_axes_are_labelled_at_decades():
    assert LOG_AXIS == dict(type="log", dtick=1, exponentformat="power")


def test_the_failure_table_is_titled_by_what_it_holds():
    """The worst-estimated neurons can include ones whose gap is below the accuracy threshold:
    the caption gives the gaps, and such a row says "none" rather than "accurate"."""
    from types import SimpleNamespace

    from helpers.book.figures.neurons import failure_table
    from helpers.book.summaries.patching import failure_mode_summary
    from helpers.core.names import Neuron
    from helpers.methods.attribution import VERDICTS

    values = torch.tensor([0.5, 0.004])
    diagnosis = SimpleNamespace(verdicts=[VERDICTS[2], VERDICTS[0]], gap=torch.tensor([0.3, 0.004]), neurons=[Neuron(1, 2), Neuron(1, 3)],
                                exact=values, estimate=values, frozen_exact=values, frozen_estimate=values,
                                closed_by_freezing=values, opposing=values)
    caption = failure_mode_summary(diagnosis)["failure_caption"]
    assert caption == "The 2 neurons with the largest gaps between attribution and exact patching (gaps 0.004 to 0.300; below 0.01 a gap is no failure)"
    assert list(failure_table(diagnosis)["failure mode"]) == ["cancellation", "none (gap below 0.01)"]
