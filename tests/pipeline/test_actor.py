"""Actors: textual-inversion embeddings loaded as tokens, used through `actor=`."""

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mpds.testing.components import build_actor_embedding

KWARGS = {"height": 32, "width": 32, "num_inference_steps": 2, "output_type": "np"}


def seeded():
    return torch.Generator().manual_seed(0)


def test_load_actor_registers_a_token_with_the_embedding(pipe, tmp_path):
    directory = build_actor_embedding(name="carla", seed=5, directory=str(tmp_path))
    assert pipe.load_actor(directory) == "carla"
    assert pipe.actors == ["bob", "carla"]
    token_id = pipe.tokenizer.convert_tokens_to_ids("<carla>")
    expected = load_file(f"{directory}/learned_embeds.safetensors")["<carla>"][0]
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[token_id], expected)


def test_name_overrides_the_stored_token(pipe, tmp_path):
    directory = build_actor_embedding(name="x", directory=str(tmp_path))
    assert pipe.load_actor(f"{directory}/learned_embeds.safetensors", name="dana") == "dana"
    assert "dana" in pipe.actors and "<dana>" in pipe.tokenizer.get_vocab()


def test_actor_by_name_or_token_gives_the_same_poster(pipe):
    by_name = pipe("a poster of {actor}", actor="bob", generator=seeded(), **KWARGS).images
    by_token = pipe("a poster of {actor}", actor="<bob>", generator=seeded(), **KWARGS).images
    assert np.array_equal(by_name, by_token)


def test_the_actor_changes_the_poster(pipe):
    with_actor = pipe("a poster of {actor}", actor="bob", generator=seeded(), **KWARGS).images
    placeholder = pipe("a poster of a person", generator=seeded(), **KWARGS).images
    assert not np.allclose(with_actor, placeholder)


def test_multi_vector_actor_embedding(pipe, tmp_path):
    save_file({"<eve>": torch.randn(3, 32, generator=torch.Generator().manual_seed(1))}, tmp_path / "eve.safetensors")
    pipe.load_actor(tmp_path / "eve.safetensors")
    assert {"<eve>", "<eve>_1", "<eve>_2"} <= set(pipe.tokenizer.get_vocab())
    image = pipe("a poster of {actor}", actor="eve", generator=seeded(), **KWARGS).images
    assert np.isfinite(image).all()
