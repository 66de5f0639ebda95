"""Text legibility: the comparison by hand, and Tesseract reading back captions drawn by `render_caption`."""

import csv

import pytest

from mpds.data import sample_dir
from mpds.eval import TesseractEngine, edit_distance, legibility_of, text_legibility
from mpds.pipeline import PosterCaption, render_caption

from .conftest import needs_tesseract


def test_edit_distance_counts_insertions_deletions_and_substitutions():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("same", "same") == 0


def test_legibility_of_one_reading():
    result = legibility_of("NIGHT SHlFT\nANNA LEE  2026", "Night Shift\nAnna Lee")
    assert result["word_accuracy"] == 0.75  # "shift" was misread
    assert result["sentence_correct"] is False
    assert result["normalized_edit_distance"] == pytest.approx(6 / 25)  # "shlft" (1) + " 2026" (5) over 25 chars

    perfect = legibility_of("night shift, anna lee!", "Night Shift\nAnna Lee")
    assert perfect == {"word_accuracy": 1.0, "sentence_correct": True, "normalized_edit_distance": 0.0}


def test_a_repeated_caption_word_must_be_read_as_often():
    assert legibility_of("new york", "New York New York")["word_accuracy"] == 0.5


def test_text_legibility_with_a_pluggable_engine(random_images):
    readings = iter(["THE END", "nothing"])
    result = text_legibility(random_images[:2], ["The End", "Begin Again"], engine=lambda image: next(readings))
    assert result["word_accuracy"] == 0.5 and result["sentence_accuracy"] == 0.5
    assert result["readings"] == ["THE END", "nothing"]


@needs_tesseract
def test_tesseract_reads_back_the_sample_titles_drawn_by_render_caption():
    with open(sample_dir() / "meta.csv", newline="", encoding="utf-8") as file:
        titles = [row["title"] for row in csv.DictReader(file) if row["title"].strip()]
    posters = [render_caption(PosterCaption(title), 256, 384).sketch for title in titles]

    result = text_legibility(posters, titles, TesseractEngine(upscale=768))

    assert len(titles) > 90
    assert result["word_accuracy"] >= 0.95
    assert result["sentence_accuracy"] >= 0.9


@needs_tesseract
def test_tesseract_reads_title_and_credits():
    caption = PosterCaption("NIGHT SHIFT", credits=("ANNA LEE", "MARK DOE"))
    poster = render_caption(caption, 384, 576).sketch
    result = text_legibility([poster], ["NIGHT SHIFT\nANNA LEE, MARK DOE"])
    assert result["word_accuracy"] == 1.0
