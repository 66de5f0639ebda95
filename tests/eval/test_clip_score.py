"""CLIP score: the raw cosine and CLIPScore (w = 2.5), against values computed by hand from the model's forward."""

import numpy as np
import pytest
import torch

from mpds.eval import clip_score


def hand_cosines(model_and_processor, images, prompts):
    """Cosines from CLIPModel's own forward: logits_per_image is exp(logit_scale) times the cosine matrix."""
    model, processor = model_and_processor
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**inputs).logits_per_image
    return np.diag(logits.double().numpy()) / float(model.logit_scale.detach().exp())


def test_clip_score_is_the_mean_cosine_and_clipscore_its_scaled_clipped_mean(clip, random_images):
    prompts = ["a noir poster", "a space opera", "a comedy", "a war film", "a western", "a romance"]
    cosines = hand_cosines(clip, random_images, prompts)
    assert (cosines < 0).any() and (cosines > 0).any()  # both branches of max(cos, 0) are exercised

    result = clip_score(random_images, prompts, clip, batch_size=4, device="cpu")

    assert result["clip_cosine"] == pytest.approx(cosines.mean(), abs=1e-5)
    assert result["clipscore"] == pytest.approx(np.mean(2.5 * np.maximum(cosines, 0)), abs=1e-5)
    assert result["per_image_cosine"] == pytest.approx(cosines.tolist(), abs=1e-5)
    assert result["n"] == 6 and result["weight"] == 2.5


def test_clip_score_loads_a_model_by_path(clip, clip_folder, random_images):
    prompts = ["a"] * 2 + ["b"] * 4
    by_path = clip_score(random_images, prompts, clip_folder, device="cpu")
    built = clip_score(random_images, prompts, clip, device="cpu")
    assert by_path["clip_cosine"] == pytest.approx(built["clip_cosine"], abs=1e-6)
    assert by_path["model"] == clip_folder


def test_clip_score_needs_one_prompt_per_image(clip, random_images):
    with pytest.raises(ValueError, match="6 images and 1 prompts"):
        clip_score(random_images, ["one"], clip)
