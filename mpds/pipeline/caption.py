"""The caption branch's input: a poster caption drawn as a sketch, and the sketch's Canny edges for the ControlNet."""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Where each part of the caption goes, as (left, top, right, bottom) fractions of the poster.
# "bottom": the classic one-sheet, tagline above the art, title low, billing block at the foot.
# "top": the title over the art, credits still at the foot.
LAYOUTS = {
    "bottom": {
        "tagline": (0.08, 0.03, 0.92, 0.12),
        "title": (0.06, 0.60, 0.94, 0.82),
        "credits": (0.08, 0.85, 0.92, 0.97),
    },
    "top": {
        "title": (0.06, 0.04, 0.94, 0.26),
        "tagline": (0.08, 0.28, 0.92, 0.36),
        "credits": (0.08, 0.85, 0.92, 0.97),
    },
}

# Starting font size of each part, as a fraction of the poster's height; text that does not fit shrinks from here.
_START_SIZE = {"title": 0.14, "tagline": 0.045, "credits": 0.035}
_MIN_FONT_SIZE = 4
# Canny thresholds for black text on a white page: any glyph outline is a strong edge.
_CANNY_LOW, _CANNY_HIGH = 100, 200


@dataclass(frozen=True)
class PosterCaption:
    """The text printed on a poster.

    Args:
        title: the film's title, drawn large.
        credits: billing lines (names, studio), drawn small at the foot.
        tagline: an optional line of ad copy.
        layout: where the parts go; one of `LAYOUTS` (`"bottom"` or `"top"`).

    Example:
        >>> caption = PosterCaption("THE LAST TRAIN", credits=("ANNA LEE", "MARK DOE"), tagline="No way back.")
    """

    title: str
    credits: tuple[str, ...] = ()
    tagline: str | None = None
    layout: str = "bottom"

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"`layout` must be one of {sorted(LAYOUTS)}, got {self.layout!r}.")
        if isinstance(self.credits, str):
            object.__setattr__(self, "credits", (self.credits,))
        else:
            object.__setattr__(self, "credits", tuple(self.credits))

    @property
    def parts(self) -> dict[str, str]:
        """The non-empty parts, keyed by role (`title`, `tagline`, `credits`)."""
        parts = {"title": self.title.strip(), "tagline": (self.tagline or "").strip()}
        parts["credits"] = "   ".join(line.strip() for line in self.credits if line.strip())
        return {role: text for role, text in parts.items() if text}

    @property
    def words(self) -> list[str]:
        """The caption's words, lower-cased, for finding them in a prompt."""
        return [word.lower() for text in self.parts.values() for word in text.split()]

    @property
    def is_empty(self) -> bool:
        return not self.parts


@dataclass
class RenderedCaption:
    """What `render_caption` returns.

    Attributes:
        sketch: the caption drawn black on white, RGB.
        control_image: its Canny edges, white on black, RGB (3 identical channels): the ControlNet's input.
        text_boxes: pixel boxes (left, top, right, bottom) of the drawn text, keyed by role.
        lines: the lines each part was wrapped into, keyed by role.
        font_sizes: the font size each part was drawn at, keyed by role.
    """

    sketch: Image.Image
    control_image: Image.Image
    text_boxes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    lines: dict[str, list[str]] = field(default_factory=dict)
    font_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not self.text_boxes


def _load_font(font: str | os.PathLike | None, size: int) -> ImageFont.FreeTypeFont:
    if font is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(os.fspath(font), size=size)


def _text_width(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def _breakable_anywhere(word: str) -> bool:
    """Scripts written without spaces (CJK) may break between any two characters; Latin-like words may not."""
    return any(unicodedata.east_asian_width(character) in ("W", "F") for character in word)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, max_width: int, break_words: bool) -> list[str] | None:
    """Greedy line breaking at spaces; inside a word only for CJK text, or for any word when `break_words`.

    Returns None when the text cannot be wrapped to `max_width` under these rules.
    """
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if _text_width(draw, candidate, font) <= max_width:
            line = candidate
            continue
        if line:
            lines.append(line)
        if _text_width(draw, word, font) <= max_width:
            line = word
            continue
        if not (break_words or _breakable_anywhere(word)):
            return None
        line = ""
        for character in word:
            if _text_width(draw, line + character, font) <= max_width:
                line += character
            elif not line:
                return None
            else:
                lines.append(line)
                line = character
    if line:
        lines.append(line)
    return lines


def _fit(draw, text: str, box: tuple[int, int, int, int], start_size: int, font):
    """The largest font size (from `start_size` down) at which `text`, wrapped, fits in `box`.

    Words are kept whole while any size allows it; only then are they broken between characters.
    """
    box_width, box_height = box[2] - box[0], box[3] - box[1]
    for break_words in (False, True):
        size = max(start_size, _MIN_FONT_SIZE)
        while size >= _MIN_FONT_SIZE:
            loaded = _load_font(font, size)
            lines = _wrap(draw, text, loaded, box_width, break_words)
            line_height = int(size * 1.15)
            if lines is not None and line_height * len(lines) <= box_height:
                return loaded, lines, line_height
            size = int(size * 0.9) if size > 10 else size - 1
    raise ValueError(
        f"Caption text {text!r} does not fit in a {box_width}x{box_height} pixel box even at font size "
        f"{_MIN_FONT_SIZE}; shorten it or render a larger poster."
    )


def render_caption(
    caption: PosterCaption | str | None,
    width: int,
    height: int,
    font: str | os.PathLike | None = None,
) -> RenderedCaption:
    """Draw a poster caption and compute its Canny edges for the caption ControlNet.

    The title is drawn large and the credits small, in the positions of `caption.layout`. Text that is too long
    is wrapped, then shrunk; it is never cut. An empty caption gives a blank sketch, black edges and no text boxes.

    Args:
        caption: a `PosterCaption`, or a plain string used as the title, or None.
        width, height: the poster's size in pixels.
        font: a TrueType/OpenType font file; by default Pillow's built-in scalable font (Latin glyphs only:
            pass a font covering your script, e.g. Noto Sans CJK, for other scripts).

    Returns:
        A `RenderedCaption` with `sketch`, `control_image` (edges, white on black, 3 channels) and `text_boxes`.

    Raises:
        ValueError: if a part cannot fit in its box even at the smallest font size.

    Example:
        >>> rendered = render_caption(PosterCaption("NIGHT SHIFT", credits=("A. ACTOR",)), 512, 768)
        >>> rendered.control_image.size
        (512, 768)
    """
    if caption is None:
        caption = PosterCaption("")
    elif isinstance(caption, str):
        caption = PosterCaption(caption)

    sketch = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sketch)
    text_boxes, wrapped, font_sizes = {}, {}, {}
    for role, text in caption.parts.items():
        left, top, right, bottom = LAYOUTS[caption.layout][role]
        box = (int(left * width), int(top * height), int(right * width), int(bottom * height))
        loaded, lines, line_height = _fit(draw, text, box, int(_START_SIZE[role] * height), font)
        y = box[1] + (box[3] - box[1] - line_height * len(lines)) // 2
        drawn = []
        for line in lines:
            x = (box[0] + box[2]) // 2
            draw.text((x, y), line, fill="black", font=loaded, anchor="mt")
            drawn.append(draw.textbbox((x, y), line, font=loaded, anchor="mt"))
            y += line_height
        wrapped[role], font_sizes[role] = lines, loaded.size
        text_boxes[role] = (
            min(b[0] for b in drawn),
            min(b[1] for b in drawn),
            max(b[2] for b in drawn),
            max(b[3] for b in drawn),
        )

    gray = np.asarray(sketch.convert("L"))
    edges = cv2.Canny(gray, _CANNY_LOW, _CANNY_HIGH)
    control_image = Image.fromarray(np.stack([edges] * 3, axis=-1))
    return RenderedCaption(sketch, control_image, text_boxes, wrapped, font_sizes)
