"""Loading the models behind the model-backed metrics: by Hub id or local path, safetensors only, best device."""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from ..devices import best_device

ImageLike = Image.Image | str | os.PathLike


def load_clip(model: str | os.PathLike | tuple, device: str | None = None):
    """A `(CLIPModel, CLIPProcessor)` pair on `device`, in eval mode.

    Args:
        model: a Hub id or local folder (loaded with `use_safetensors=True`, never with remote code), or an
            already built `(model, processor)` pair, which is moved to `device` and returned.
        device: where to run; `best_device()` by default.
    """
    from transformers import CLIPModel, CLIPProcessor

    device = device or best_device()
    if isinstance(model, tuple):
        clip, processor = model
    else:
        clip = CLIPModel.from_pretrained(os.fspath(model), use_safetensors=True)
        processor = CLIPProcessor.from_pretrained(os.fspath(model))
    return clip.to(device).eval(), processor


def open_image(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with Image.open(image) as opened:
        return opened.convert("RGB")


def batches(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be at least 1, got {batch_size}.")
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


@torch.no_grad()
def clip_image_embeddings(images: Iterable[ImageLike], clip, processor, batch_size: int = 16) -> np.ndarray:
    """L2-normalised CLIP image embeddings, one row per image (float64 numpy)."""
    device = next(clip.parameters()).device
    rows = []
    for batch in batches(list(images), batch_size):
        pixels = processor(images=[open_image(image) for image in batch], return_tensors="pt")["pixel_values"]
        pooled = clip.vision_model(pixel_values=pixels.to(device)).pooler_output
        embeddings = clip.visual_projection(pooled).double()
        rows.append(torch.nn.functional.normalize(embeddings, dim=-1).cpu().numpy())
    return np.concatenate(rows) if rows else np.zeros((0, clip.config.projection_dim))


@torch.no_grad()
def clip_text_embeddings(texts: Sequence[str], clip, processor, batch_size: int = 16) -> np.ndarray:
    """L2-normalised CLIP text embeddings, one row per text; texts are truncated to the model's window."""
    device = next(clip.parameters()).device
    rows = []
    for batch in batches(list(texts), batch_size):
        tokens = processor(text=list(batch), return_tensors="pt", padding=True, truncation=True,
                           max_length=clip.config.text_config.max_position_embeddings)
        pooled = clip.text_model(input_ids=tokens["input_ids"].to(device),
                                 attention_mask=tokens["attention_mask"].to(device)).pooler_output
        embeddings = clip.text_projection(pooled).double()
        rows.append(torch.nn.functional.normalize(embeddings, dim=-1).cpu().numpy())
    return np.concatenate(rows) if rows else np.zeros((0, clip.config.projection_dim))
