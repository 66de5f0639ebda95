"""The three texts of a poster, as the MPDS paper composes them.

- the *movie-synopsis prompt*: title, genres, cast and synopsis in one normalised sentence;
- the *prompt*: the vision-perceptive description (posters.csv) first, then the synopsis prompt,
  trimmed at a word boundary so that the whole fits CLIP's 77-token window;
- the *caption*: the text that should appear on the poster, the title then the top-billed names.

Example:
    >>> synopsis_prompt("Alien", ["Horror", "Sci-Fi"], ["Sigourney Weaver"], "A crew meets a creature.")
    'Alien, a horror and sci-fi movie starring Sigourney Weaver. A crew meets a creature.'
    >>> poster_caption("Alien", ["Sigourney Weaver", "Tom Skerritt"])
    'Alien\\nSigourney Weaver, Tom Skerritt'
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable, Optional, Sequence

CLIP_MAX_TOKENS = 77
TOP_BILLED = 3

# CLIP's pre-tokenizer splits text into letter runs, single digits and punctuation runs.
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_SPACE_BEFORE_PUNCTUATION = re.compile(r" ([,.;:!?])")
_CLIP_PIECES = re.compile(r"'(?:s|t|re|ve|m|ll|d)|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)


def normalize(text: Optional[str]) -> str:
    """NFKC, straight quotes, one space between words, no space before punctuation."""
    if not text:
        return ""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = " ".join(text.split())
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text) if " " in text else text


def _join_names(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def synopsis_prompt(
    title: Optional[str],
    genres: Sequence[str] = (),
    cast: Sequence[str] = (),
    synopsis: Optional[str] = None,
    *,
    top_billed: int = TOP_BILLED,
) -> str:
    """The movie-synopsis prompt; missing parts are left out rather than filled with placeholders."""
    title = normalize(title)
    kind = f"a {_join_names([g.lower() for g in genres])} movie" if genres else "a movie"
    head = f"{title}, {kind}" if title else kind[0].upper() + kind[1:]
    names = [normalize(name) for name in cast[:top_billed] if normalize(name)]
    if names:
        head += f" starring {_join_names(names)}"
    synopsis = normalize(synopsis)
    text = f"{head}. {synopsis}" if synopsis else f"{head}."
    return normalize(text)


def poster_caption(title: Optional[str], cast: Sequence[str] = (), *, top_billed: int = TOP_BILLED) -> str:
    """The text that should appear on the poster: the title, then the top-billed names on a second line."""
    names = [normalize(name) for name in cast[:top_billed] if normalize(name)]
    lines = [normalize(title), ", ".join(names)]
    return "\n".join(line for line in lines if line)


def estimate_clip_tokens(text: str) -> int:
    """An estimate of the CLIP BPE tokens in `text`, without special tokens.

    Used when no tokenizer is at hand (the build runs offline): common words are one token,
    longer or non-ASCII words a token per six bytes, digits and punctuation runs one each.
    Pass a real tokenizer to `merge_prompt` for an exact count.
    """
    pieces = _CLIP_PIECES.findall(text)
    if text.isascii():  # one byte per character: the same count, without encoding each piece
        return len(pieces) + sum((len(piece) - 1) // 6 for piece in pieces if len(piece) >= 7 and piece[0].isalpha())
    count = 0
    for piece in pieces:
        size = len(piece.encode("utf-8"))
        count += 1 + (size - 1) // 6 if piece[0].isalpha() else 1
    return count


def token_counter(tokenizer) -> Callable[[str], int]:
    """A counter of content tokens (special tokens excluded) for a `transformers` tokenizer."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    return count


def _trim_to_fit(prefix: str, words: list[str], fits: Callable[[str], bool]) -> str:
    """`prefix` followed by the longest run of leading `words` that still fits."""
    low, high = 0, len(words)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(prefix + " ".join(words[:middle])):
            low = middle
        else:
            high = middle - 1
    return (prefix + " ".join(words[:low])).strip()


def merge_prompt(
    visual_prompt: Optional[str],
    synopsis: Optional[str],
    *,
    max_tokens: int = CLIP_MAX_TOKENS,
    count_tokens: Optional[Callable[[str], int]] = None,
) -> str:
    """The training prompt: the visual description first, then the synopsis prompt trimmed at a word boundary.

    Args:
        visual_prompt: the vision-perceptive description of the poster (may be empty).
        synopsis: the movie-synopsis prompt (may be empty).
        max_tokens: the text encoder's window, start and end tokens included (77 for CLIP).
        count_tokens: counts a text's content tokens; defaults to `estimate_clip_tokens`.
            Use `token_counter(CLIPTokenizer...)` for an exact fit.

    Returns:
        The merged prompt. A visual description longer than the window is itself trimmed at a
        word boundary, and nothing of the synopsis is kept.

    Raises:
        ValueError: if `max_tokens` leaves no room for text.
    """
    if max_tokens < 3:
        raise ValueError(f"max_tokens must leave room for text besides the 2 special tokens, got {max_tokens}")
    count_tokens = count_tokens or estimate_clip_tokens
    budget = max_tokens - 2

    def fits(text: str) -> bool:
        return count_tokens(text) <= budget

    visual = normalize(visual_prompt).rstrip(" .")
    synopsis = normalize(synopsis)
    prefix = f"{visual}. " if visual else ""
    whole = (prefix + synopsis).strip()
    if fits(whole):  # most prompts: one count, no search (the visual description, a prefix, fits too)
        return whole
    if visual and not fits(visual + "."):
        return _trim_to_fit("", visual.split(" "), fits)
    return _trim_to_fit(prefix, synopsis.split(" "), fits)
