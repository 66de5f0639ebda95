"""CLIP score of images against their prompts: the raw cosine, and CLIPScore (Hessel et al. 2021)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .models import ImageLike, clip_image_embeddings, clip_text_embeddings, load_clip

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"
CLIPSCORE_WEIGHT = 2.5


def clip_score(
    images: Sequence[ImageLike],
    prompts: Sequence[str],
    model: str | os.PathLike | tuple = DEFAULT_CLIP_MODEL,
    *,
    weight: float = CLIPSCORE_WEIGHT,
    batch_size: int = 16,
    device: str | None = None,
) -> dict:
    """Mean CLIP similarity of each image to its prompt.

    Two numbers: `clip_cosine`, the plain cosine of the image and text embeddings (about 0.2 to 0.35 for
    matching pairs with OpenAI's CLIP), and `clipscore`, Hessel et al.'s `weight * max(cosine, 0)` with
    weight 2.5, the scale on which a value such as the MPDS paper's 0.85 is possible.

    Args:
        images: PIL images or image paths.
        prompts: one prompt per image.
        model: a CLIP model id or folder, or a `(CLIPModel, CLIPProcessor)` pair.
        weight: CLIPScore's w.
        batch_size: images (and texts) per forward pass.
        device: where to run; the best available by default.

    Returns:
        `{"clip_cosine", "clipscore", "per_image_cosine", "n", "model", "weight"}`.

    Raises:
        ValueError: when the numbers of images and prompts differ, or there are none.

    Example:
        >>> clip_score(["poster.png"], ["a noir movie poster"])["clipscore"]  # doctest: +SKIP
    """
    if len(images) != len(prompts):
        raise ValueError(f"clip_score needs one prompt per image; got {len(images)} images and {len(prompts)} prompts.")
    if not images:
        raise ValueError("clip_score needs at least one image.")
    clip, processor = load_clip(model, device)
    image_embeddings = clip_image_embeddings(images, clip, processor, batch_size)
    text_embeddings = clip_text_embeddings(prompts, clip, processor, batch_size)
    cosines = np.sum(image_embeddings * text_embeddings, axis=1)
    return {
        "clip_cosine": float(cosines.mean()),
        "clipscore": float(np.mean(weight * np.clip(cosines, 0, None))),
        "per_image_cosine": cosines.tolist(),
        "n": len(images),
        "model": model if isinstance(model, str) else os.fspath(model) if isinstance(model, os.PathLike) else "custom",
        "weight": weight,
    }
