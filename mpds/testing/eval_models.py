"""Tiny random CLIP models and processors for the evaluation tests, demo and benchmarks, built offline.

A PickScore model is a CLIP model (the real one is a fine-tuned CLIP-H), so one builder serves both.

Example:
    >>> from mpds.testing.eval_models import build_clip, save_clip
    >>> model, processor = build_clip(seed=0)
    >>> folder = save_clip("tiny-clip", seed=0)  # loadable by `mpds.eval` as a model path
"""

from __future__ import annotations

import os

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPVisionConfig

from .components import build_tokenizer

IMAGE_SIZE = 32


def build_clip_processor() -> CLIPProcessor:
    """CLIP's preprocessing at 32 pixels, with the byte-level tokenizer of `mpds.testing.components`."""
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=build_tokenizer())


def build_clip(seed: int = 0) -> tuple[CLIPModel, CLIPProcessor]:
    """A random CLIP model (two layers of width 32 per tower, 16-d projection) and its processor."""
    torch.manual_seed(seed)
    text = CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=514,
        bos_token_id=0, eos_token_id=1, pad_token_id=1, max_position_embeddings=77,
    )
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        image_size=IMAGE_SIZE, patch_size=8,
    )
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)
    return CLIPModel(config).eval(), build_clip_processor()


def save_clip(directory: str | os.PathLike, seed: int = 0) -> str:
    """Build a random CLIP model and save it (safetensors) with its processor to `directory`; returns the path."""
    model, processor = build_clip(seed)
    model.save_pretrained(directory, safe_serialization=True)
    processor.save_pretrained(directory)
    return os.fspath(directory)
