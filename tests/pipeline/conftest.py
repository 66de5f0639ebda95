"""Fixtures of the pipeline tests: tiny random-weight pipelines built in the session, no network."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from mpds.testing.components import build_actor_embedding, build_poster_pipeline

@pytest.fixture
def pipe():
    """A tiny pipeline with a caption ControlNet and one actor, `bob`."""
    pipeline = build_poster_pipeline(size="tiny", with_controlnet=True)
    pipeline.load_actor(build_actor_embedding(name="bob"))
    return pipeline


@pytest.fixture
def pipe_without_controlnet():
    return build_poster_pipeline(size="tiny", with_controlnet=False)


@pytest.fixture
def call_kwargs():
    """Arguments of a quick, deterministic call (without the generator, which each call needs fresh)."""
    return {"height": 32, "width": 32, "num_inference_steps": 2, "output_type": "np"}
