"""Each metric is also an `evaluate` module shipped in the package, loaded offline by path."""

import evaluate
import pytest

from mpds.eval import MODULES, actor_likeness, clip_score, module_path, pickscore_win_rates

from .conftest import needs_tesseract


def test_every_metric_has_a_module_file():
    from pathlib import Path

    for name in MODULES:
        folder = Path(module_path(name))
        assert (folder / f"{folder.name}.py").is_file()
    with pytest.raises(ValueError, match="clip_score"):
        module_path("bleu")


def test_clip_score_module_agrees_with_the_function(clip_folder, random_images):
    prompts = [f"poster {i}" for i in range(len(random_images))]
    metric = evaluate.load(module_path("clip_score"))
    result = metric.compute(predictions=random_images, references=prompts, model=clip_folder)
    expected = clip_score(random_images, prompts, clip_folder)
    assert result["clipscore"] == pytest.approx(expected["clipscore"], abs=1e-6)
    assert result["clip_cosine"] == pytest.approx(expected["clip_cosine"], abs=1e-6)


def test_pickscore_module_agrees_with_the_function(clip_folder, random_images):
    prompts = ["a", "b", "c"]
    metric = evaluate.load(module_path("pickscore"))
    result = metric.compute(predictions=random_images, references=prompts * 2, systems=["x"] * 3 + ["y"] * 3,
                            model=clip_folder)
    expected = pickscore_win_rates({"x": random_images[:3], "y": random_images[3:]}, prompts, clip_folder)
    assert result["win_rate"] == pytest.approx(expected["win_rate"])


def test_fid_and_likeness_modules(clip_folder, random_images):
    fid = evaluate.load(module_path("fid")).compute(predictions=random_images, reference=random_images,
                                                    features=clip_folder, kid_subsets=2)
    assert fid["fid"] == pytest.approx(0.0, abs=1e-6) and fid["n"] == len(random_images)

    likeness = evaluate.load(module_path("actor_likeness")).compute(
        predictions=random_images[:2], references=[[random_images[0]], [random_images[2]]], model=clip_folder)
    expected = actor_likeness(random_images[:2], [[random_images[0]], [random_images[2]]], clip_folder)
    assert likeness["actor_likeness"] == pytest.approx(expected["actor_likeness"], abs=1e-6)


@needs_tesseract
def test_text_legibility_module_reads_a_drawn_caption():
    from mpds.pipeline import render_caption

    poster = render_caption("GLASS EMPIRE", 256, 384).sketch
    result = evaluate.load(module_path("text_legibility")).compute(predictions=[poster], references=["Glass Empire"])
    assert result["word_accuracy"] == 1.0 and result["sentence_accuracy"] == 1.0
