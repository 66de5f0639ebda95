"""Actor likeness: cosine of each poster to the mean embedding of its actor's photos."""

import numpy as np
import pytest
import torch

from mpds.eval import actor_likeness


def embed(model_and_processor, images):
    model, processor = model_and_processor
    with torch.no_grad():
        features = model.get_image_features(**processor(images=images, return_tensors="pt"))
    features = getattr(features, "pooler_output", features).double().numpy()
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def test_likeness_is_the_cosine_to_the_mean_photo_embedding(clip, random_images):
    posters, photos = random_images[:2], [random_images[2:4], [random_images[4]]]
    poster_rows, first, second = embed(clip, posters), embed(clip, photos[0]), embed(clip, photos[1])
    centre = first.mean(0) / np.linalg.norm(first.mean(0))
    expected = [poster_rows[0] @ centre, poster_rows[1] @ second[0]]

    result = actor_likeness(posters, photos, clip)
    assert result["per_image"] == pytest.approx(expected, abs=1e-5)
    assert result["actor_likeness"] == pytest.approx(np.mean(expected), abs=1e-5)


def test_a_poster_that_is_the_photo_has_likeness_one_and_posters_without_photos_are_skipped(clip, random_images):
    result = actor_likeness(random_images[:2], [[random_images[0]], []], clip)
    assert result["per_image"][0] == pytest.approx(1.0, abs=1e-6) and result["per_image"][1] is None
    assert result["n"] == 1
