"""PickScore: exp(logit_scale) x cosine, and pairwise win rates (which need not sum to 100%)."""

import numpy as np
import pytest
import torch

from mpds.eval import pick_scores, pickscore_win_rates, win_rates


def test_win_rates_count_wins_and_half_ties():
    result = win_rates({"ours": [3.0, 1.0, 2.0, 0.0], "sd15": [1.0, 1.0, 5.0, 1.0], "sd21": [0.0, 0.0, 0.0, 0.0]})
    # ours vs sd15: win, tie, loss, loss = 1.5 / 4; ours vs sd21: win, win, win, tie = 3.5 / 4.
    assert result["pairwise"]["ours"] == {"sd15": 0.375, "sd21": 0.875}
    assert result["pairwise"]["sd15"]["ours"] == 0.625
    assert result["win_rate"]["ours"] == pytest.approx((0.375 + 0.875) / 2)
    assert result["pairwise"]["sd21"]["sd15"] == pytest.approx(0.0)


def test_win_rates_need_two_models_on_the_same_prompts():
    with pytest.raises(ValueError, match="at least two models"):
        win_rates({"ours": [1.0]})
    with pytest.raises(ValueError, match="same prompts"):
        win_rates({"ours": [1.0], "sd15": [1.0, 2.0]})


def test_pick_scores_are_the_models_logits_for_each_pair(pickscore_model, random_images):
    model, processor = pickscore_model
    prompts = [f"poster number {i}" for i in range(len(random_images))]
    inputs = processor(text=prompts, images=random_images, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = np.diag(model(**inputs).logits_per_image.double().numpy())
    assert pick_scores(random_images, prompts, pickscore_model, batch_size=4) == pytest.approx(expected, abs=1e-4)


def test_pickscore_win_rates_of_identical_posters_are_one_half(pickscore_model, random_images):
    prompts = ["a"] * len(random_images)
    result = pickscore_win_rates({"x": random_images, "y": list(random_images), "z": random_images[::-1]},
                                 prompts, pickscore_model)
    assert result["pairwise"]["x"]["y"] == 0.5
    assert sum(result["win_rate"].values()) == pytest.approx(1.5)  # three models: rates average to one half
    assert result["n"] == len(random_images)
