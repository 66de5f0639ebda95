"""PickScore (Kirstain et al. 2023) and the pairwise win rates that the MPDS paper's Table 1 reports."""

from __future__ import annotations

import os
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np
import torch

from .models import ImageLike, clip_image_embeddings, clip_text_embeddings, load_clip

# A CLIP-H fine-tuned on Pick-a-Pic; its repo holds model.safetensors and the processor files.
DEFAULT_PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"


def pick_scores(
    images: Sequence[ImageLike],
    prompts: Sequence[str],
    model: str | os.PathLike | tuple = DEFAULT_PICKSCORE_MODEL,
    *,
    batch_size: int = 16,
    device: str | None = None,
) -> np.ndarray:
    """The PickScore of each image for its prompt: `exp(logit_scale) * cosine(image, text)`.

    Args:
        images: PIL images or paths. prompts: one per image.
        model: a PickScore (CLIP) model id or folder, or a `(CLIPModel, CLIPProcessor)` pair.

    Raises:
        ValueError: when the numbers of images and prompts differ.
    """
    if len(images) != len(prompts):
        raise ValueError(f"pick_scores needs one prompt per image; got {len(images)} images and {len(prompts)} prompts.")
    clip, processor = load_clip(model, device)
    image_embeddings = clip_image_embeddings(images, clip, processor, batch_size)
    text_embeddings = clip_text_embeddings(prompts, clip, processor, batch_size)
    with torch.no_grad():
        scale = float(clip.logit_scale.exp())
    return scale * np.sum(image_embeddings * text_embeddings, axis=1)


def win_rates(scores: Mapping[str, Sequence[float]]) -> dict:
    """Pairwise win rates from per-prompt scores of several models on the same prompts.

    Model A beats B on a prompt when its score is higher; a tie counts half. The paper's PickScore column is
    such a rate, so its values do not sum to 100%.

    Args:
        scores: model name -> one score per prompt (same prompts, same order, for every model).

    Returns:
        `{"win_rate": {name: mean rate against the other models}, "pairwise": {name: {other: rate}}}`.

    Raises:
        ValueError: with fewer than two models, or different numbers of prompts.

    Example:
        >>> win_rates({"ours": [2.0, 1.0], "sd15": [1.0, 1.0]})["win_rate"]
        {'ours': 0.75, 'sd15': 0.25}
    """
    if len(scores) < 2:
        raise ValueError(f"win rates need at least two models; got {list(scores)}.")
    lengths = {name: len(values) for name, values in scores.items()}
    if len(set(lengths.values())) != 1 or not next(iter(lengths.values())):
        raise ValueError(f"every model needs a score for each of the same prompts; got counts {lengths}.")
    pairwise: dict[str, dict[str, float]] = {name: {} for name in scores}
    for a, b in combinations(scores, 2):
        score_a, score_b = np.asarray(scores[a], dtype=float), np.asarray(scores[b], dtype=float)
        rate = float(np.mean((score_a > score_b) + 0.5 * (score_a == score_b)))
        pairwise[a][b], pairwise[b][a] = rate, 1.0 - rate
    return {
        "win_rate": {name: float(np.mean(list(rates.values()))) for name, rates in pairwise.items()},
        "pairwise": pairwise,
    }


def pickscore_win_rates(
    images: Mapping[str, Sequence[ImageLike]],
    prompts: Sequence[str],
    model: str | os.PathLike | tuple = DEFAULT_PICKSCORE_MODEL,
    *,
    batch_size: int = 16,
    device: str | None = None,
) -> dict:
    """PickScore each model's posters for the same prompts, then `win_rates`; adds `mean_score` per model."""
    if isinstance(model, (str, os.PathLike)):
        model = load_clip(model, device)
    scores = {name: pick_scores(posters, prompts, model, batch_size=batch_size, device=device)
              for name, posters in images.items()}
    result = win_rates(scores)
    result["mean_score"] = {name: float(np.mean(values)) for name, values in scores.items()}
    result["n"] = len(prompts)
    return result
