"""Builders shared by the tests, the demo and the benchmarks: synthetic raw releases and tiny models.

The model builders (`mpds.testing.components`: tiny or Stable-Diffusion-1.5-sized random-weight
pipeline parts) import torch, so they load on first use.
"""

import importlib

from .synthetic import draw_face, draw_poster, make_raw_release

_COMPONENTS = (
    "add_random_lora",
    "build_actor_embedding",
    "build_components",
    "build_controlnet",
    "build_poster_pipeline",
    "build_scheduler",
    "build_text_encoder",
    "build_tokenizer",
    "build_unet",
    "build_vae",
)

__all__ = ["draw_face", "draw_poster", "make_raw_release", *_COMPONENTS]


def __getattr__(name):
    if name in _COMPONENTS:
        return getattr(importlib.import_module("mpds.testing.components"), name)
    raise AttributeError(f"module 'mpds.testing' has no attribute {name!r}")
