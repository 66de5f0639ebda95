"""`render_caption`: the caption sketch and the Canny edges that feed the ControlNet."""

import os

import numpy as np
import pytest

from mpds.pipeline import LAYOUTS, PosterCaption, render_caption

WIDTH, HEIGHT = 256, 384
DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def _ink(image) -> np.ndarray:
    """True where the sketch has drawn text."""
    return np.asarray(image.convert("L")) < 128


def _inside(box, outer) -> bool:
    return outer[0] <= box[0] and outer[1] <= box[1] and box[2] <= outer[2] and box[3] <= outer[3]


def _layout_box(role, layout="bottom"):
    left, top, right, bottom = LAYOUTS[layout][role]
    return (int(left * WIDTH), int(top * HEIGHT), int(right * WIDTH), int(bottom * HEIGHT))


def test_edges_are_three_channel_white_on_black():
    rendered = render_caption(PosterCaption("NIGHT SHIFT", credits=("ANNA LEE",)), WIDTH, HEIGHT)
    edges = np.asarray(rendered.control_image)
    assert rendered.control_image.mode == "RGB" and edges.shape == (HEIGHT, WIDTH, 3)
    assert (edges[..., 0] == edges[..., 1]).all() and (edges[..., 1] == edges[..., 2]).all()
    assert set(np.unique(edges)) == {0, 255}
    assert (edges == 0).mean() > 0.8  # black background, white outlines
    assert rendered.sketch.size == (WIDTH, HEIGHT)


def test_title_is_large_and_credits_small_in_their_poster_positions():
    rendered = render_caption(PosterCaption("NIGHT SHIFT", credits=("ANNA LEE",), tagline="No way back."), WIDTH, HEIGHT)
    boxes = rendered.text_boxes
    assert set(boxes) == {"title", "credits", "tagline"}
    for role, box in boxes.items():
        assert _inside(box, _layout_box(role)), role
    title_height = boxes["title"][3] - boxes["title"][1]
    credits_height = boxes["credits"][3] - boxes["credits"][1]
    assert title_height > 2 * credits_height
    # The ink of each part lies within its box.
    ink = _ink(rendered.sketch)
    outside = ink.copy()
    for left, top, right, bottom in boxes.values():
        outside[top:bottom, left:right] = False
    assert ink.any() and not outside.any()


def test_a_long_title_is_wrapped_and_shrunk_not_cut():
    short = render_caption("NIGHT", WIDTH, HEIGHT).text_boxes["title"]
    long_title = "THE EXTRAORDINARILY LONG AND WINDING JOURNEY OF THE LAST NIGHT TRAIN TO NOWHERE"
    rendered = render_caption(long_title, WIDTH, HEIGHT)
    box = rendered.text_boxes["title"]
    assert _inside(box, _layout_box("title"))
    # Several lines: the text is taller than one line of the short title, and no ink leaves the title's box.
    ink = _ink(rendered.sketch)
    rows_with_ink = np.flatnonzero(ink.any(axis=1))
    assert rows_with_ink.min() >= box[1] and rows_with_ink.max() < box[3]
    assert (box[3] - box[1]) > (short[3] - short[1])
    # Every word is drawn, in order, on several lines, smaller than the short title.
    assert len(rendered.lines["title"]) > 1
    assert " ".join(rendered.lines["title"]) == long_title
    assert rendered.font_sizes["title"] < render_caption("NIGHT", WIDTH, HEIGHT).font_sizes["title"]


def test_text_that_cannot_fit_raises_instead_of_being_cut():
    with pytest.raises(ValueError, match="does not fit in a .* pixel box even at font size 4"):
        render_caption("WORD " * 400, 64, 64)


def test_non_latin_text_without_spaces_is_wrapped_by_character():
    title = "千と千尋の神隠し千と千尋の神隠し千と千尋の神隠し"
    rendered = render_caption(PosterCaption(title, credits=("宮崎駿",)), WIDTH, HEIGHT)
    assert set(rendered.text_boxes) == {"title", "credits"}
    assert _inside(rendered.text_boxes["title"], _layout_box("title"))
    assert len(rendered.lines["title"]) > 1 and "".join(rendered.lines["title"]) == title
    assert np.asarray(rendered.control_image).max() == 255


@pytest.mark.skipif(not os.path.exists(DEJAVU), reason="needs the DejaVu Sans font file of this system")
def test_font_by_path_draws_cyrillic():
    rendered = render_caption("НОЧНОЙ ДОЗОР", WIDTH, HEIGHT, font=DEJAVU)
    default = render_caption("НОЧНОЙ ДОЗОР", WIDTH, HEIGHT)
    assert _ink(rendered.sketch).any()
    assert not np.array_equal(np.asarray(rendered.sketch), np.asarray(default.sketch))


@pytest.mark.parametrize("caption", [None, "", "   ", PosterCaption(""), PosterCaption("", credits=("",))])
def test_empty_caption_gives_black_edges_and_no_text(caption):
    rendered = render_caption(caption, WIDTH, HEIGHT)
    assert rendered.is_empty and rendered.text_boxes == {}
    assert np.asarray(rendered.control_image).max() == 0
    assert np.asarray(rendered.sketch).min() == 255


def test_top_layout_puts_the_title_above_the_credits():
    rendered = render_caption(PosterCaption("NIGHT SHIFT", credits=("ANNA LEE",), layout="top"), WIDTH, HEIGHT)
    assert rendered.text_boxes["title"][3] < HEIGHT / 3 < rendered.text_boxes["credits"][1]


def test_a_plain_string_is_the_title():
    assert set(render_caption("NIGHT SHIFT", WIDTH, HEIGHT).text_boxes) == {"title"}
    assert PosterCaption("A", credits="ONE NAME").credits == ("ONE NAME",)


def test_latin_words_shrink_before_they_are_broken():
    rendered = render_caption("SUPERCALIFRAGILISTIC EXPIALIDOCIOUS", WIDTH, HEIGHT)
    assert rendered.lines["title"] == ["SUPERCALIFRAGILISTIC", "EXPIALIDOCIOUS"]
