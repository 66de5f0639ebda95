"""Actor likeness: how close a generated poster is to reference photos of the actor, in an image encoder's space."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .models import ImageLike, clip_image_embeddings, load_clip

DEFAULT_LIKENESS_MODEL = "openai/clip-vit-large-patch14"


def actor_likeness(
    images: Sequence[ImageLike],
    references: Sequence[Sequence[ImageLike]],
    model: str | os.PathLike | tuple = DEFAULT_LIKENESS_MODEL,
    *,
    batch_size: int = 16,
    device: str | None = None,
) -> dict:
    """Cosine similarity between each poster and the mean embedding of its actor's reference photos.

    CLIP image embeddings by default; any CLIP-style image encoder id or folder (e.g. a face-recognition
    model exported as CLIP) can be passed. Posters with no reference photos are skipped.

    Args:
        images: the posters. references: for each poster, the photos of the actor it should show.
        model: an image-encoder id or folder, or a `(CLIPModel, CLIPProcessor)` pair.

    Returns:
        `{"actor_likeness": mean cosine, "per_image": [cosine or None], "n": posters scored, "model"}`.

    Raises:
        ValueError: when the numbers of posters and reference lists differ, or no poster has references.
    """
    if len(images) != len(references):
        raise ValueError(f"actor_likeness needs one reference list per image; got {len(images)} and {len(references)}.")
    scored = [i for i, photos in enumerate(references) if len(photos)]
    if not scored:
        raise ValueError("actor_likeness needs reference photos for at least one poster.")
    clip, processor = load_clip(model, device)
    poster_embeddings = clip_image_embeddings([images[i] for i in scored], clip, processor, batch_size)
    per_image: list[float | None] = [None] * len(images)
    for row, i in enumerate(scored):
        photos = clip_image_embeddings(list(references[i]), clip, processor, batch_size)
        centre = photos.mean(0)
        centre /= np.linalg.norm(centre)
        per_image[i] = float(poster_embeddings[row] @ centre)
    values = [value for value in per_image if value is not None]
    return {
        "actor_likeness": float(np.mean(values)),
        "per_image": per_image,
        "n": len(values),
        "model": model if isinstance(model, str) else os.fspath(model) if isinstance(model, os.PathLike) else "custom",
    }
