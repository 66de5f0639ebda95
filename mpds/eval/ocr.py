"""Text legibility: read the generated poster with OCR and compare with the caption that was asked for.

An engine is any callable `engine(image) -> str`. `TesseractEngine` (Debian `tesseract-ocr`, English model
included) is the default; it calls the `tesseract` command directly, which is all `pytesseract` would do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections import Counter
from typing import Callable, Sequence

from PIL import Image

from .models import ImageLike, open_image

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


class OCRUnavailable(RuntimeError):
    """The OCR engine is not installed."""


class TesseractEngine:
    """OCR with the `tesseract` command.

    Args:
        language: tesseract language(s), e.g. "eng" or "eng+fra".
        page_segmentation: tesseract's --psm; 11 (sparse text) suits posters, whose text is scattered.
        upscale: posters smaller than this height are enlarged first; tesseract reads text about 20-40 px high best.
        command: the tesseract binary.

    Raises:
        OCRUnavailable: when the binary is not found.
    """

    def __init__(self, language: str = "eng", page_segmentation: int = 11, upscale: int = 1024,
                 command: str = "tesseract"):
        self.command = shutil.which(command)
        if self.command is None:
            raise OCRUnavailable(f"`{command}` not found; install it (Debian: apt-get install tesseract-ocr).")
        self.language, self.page_segmentation, self.upscale = language, page_segmentation, upscale
        self.settings = {"engine": "tesseract", "language": language, "psm": page_segmentation, "upscale": upscale}

    def __call__(self, image: ImageLike) -> str:
        image = open_image(image)
        if image.height < self.upscale:
            factor = self.upscale / image.height
            image = image.resize((round(image.width * factor), self.upscale), Image.LANCZOS)
        with tempfile.TemporaryDirectory(prefix="mpds-ocr-") as folder:
            path = os.path.join(folder, "poster.png")
            image.save(path)
            completed = subprocess.run(
                [self.command, path, "stdout", "-l", self.language, "--psm", str(self.page_segmentation)],
                capture_output=True, text=True, check=False,
            )
        if completed.returncode != 0:
            raise RuntimeError(f"tesseract failed ({completed.returncode}): {completed.stderr.strip()}")
        return completed.stdout


def normalize_words(text: str) -> list[str]:
    """Case-folded words (letters and digits), accents kept, punctuation dropped."""
    return _WORD.findall(unicodedata.normalize("NFKC", text or "").casefold())


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one item)."""
    previous = list(range(len(b) + 1))
    for i, item_a in enumerate(a, 1):
        current = [i]
        for j, item_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item_a != item_b)))
        previous = current
    return previous[-1]


def legibility_of(read: str, caption: str) -> dict:
    """Compare one OCR reading with its caption.

    Returns `{"word_accuracy", "sentence_correct", "normalized_edit_distance"}`: the fraction of the caption's
    words found in the reading (each reading word matches once), whether all of them were, and the character
    edit distance between the caption's words and the reading's words, both joined by spaces, over the longer
    length (0 = identical, 1 = nothing in common). Extra text on the poster lowers only the last.
    """
    wanted, got = normalize_words(caption), normalize_words(read)
    available = Counter(got)
    found = 0
    for word in wanted:
        if available[word] > 0:
            available[word] -= 1
            found += 1
    wanted_text, got_text = " ".join(wanted), " ".join(got)
    longest = max(len(wanted_text), len(got_text))
    return {
        "word_accuracy": found / len(wanted) if wanted else 1.0,
        "sentence_correct": found == len(wanted),
        "normalized_edit_distance": edit_distance(wanted_text, got_text) / longest if longest else 0.0,
    }


def text_legibility(
    images: Sequence[ImageLike],
    captions: Sequence[str],
    engine: Callable[[ImageLike], str] | None = None,
) -> dict:
    """OCR legibility of posters against the captions they were asked to show.

    Args:
        images: the posters. captions: the text each should show (title, names...), one per poster.
        engine: `engine(image) -> str`; `TesseractEngine()` by default.

    Returns:
        `{"word_accuracy", "sentence_accuracy", "normalized_edit_distance", "n", "readings", "engine"}`, the first
        three averaged over posters (word accuracy over all caption words).

    Raises:
        ValueError: when the numbers of images and captions differ, or there are none.
        OCRUnavailable: when the default engine is not installed.

    Example:
        >>> text_legibility(["poster.png"], ["NIGHT SHIFT\\nANNA LEE"])["word_accuracy"]  # doctest: +SKIP
    """
    if len(images) != len(captions):
        raise ValueError(f"text_legibility needs one caption per image; got {len(images)} and {len(captions)}.")
    if not images:
        raise ValueError("text_legibility needs at least one image.")
    engine = engine or TesseractEngine()
    readings = [engine(image) for image in images]
    scores = [legibility_of(read, caption) for read, caption in zip(readings, captions)]
    words = [len(normalize_words(caption)) for caption in captions]
    total_words = sum(words)
    return {
        "word_accuracy": (sum(s["word_accuracy"] * n for s, n in zip(scores, words)) / total_words
                          if total_words else 1.0),
        "sentence_accuracy": sum(s["sentence_correct"] for s in scores) / len(scores),
        "normalized_edit_distance": sum(s["normalized_edit_distance"] for s in scores) / len(scores),
        "n": len(images),
        "readings": readings,
        "engine": dict(getattr(engine, "settings", {"engine": type(engine).__name__})),
    }
