"""Publishing: one folder with the base components, the ControlNet, the LoRA (unfused) and the actors."""

import json
import os

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors import safe_open

from mpds.pipeline import MPDSPosterPipeline, PosterCaption
from mpds.testing.components import add_random_lora, build_components, build_controlnet

CALL = {
    "prompt": "a movie poster of {actor}, title",
    "caption": PosterCaption("NIGHT SHIFT"),
    "actor": "bob",
    "guidance_scale": 5.0,
    "actor_guidance_scale": 3.0,
    "caption_guidance_scale": 2.0,
    "height": 32,
    "width": 32,
    "num_inference_steps": 2,
    "output_type": "np",
}


def generate(pipe):
    return pipe(**CALL, generator=torch.Generator().manual_seed(0)).images


@pytest.fixture
def saved(pipe, tmp_path):
    """The fixture pipeline with a LoRA, saved; returns (pipeline, its image, its image without LoRA, folder)."""
    without_lora = generate(pipe)
    add_random_lora(pipe, adapter_name="poster_style")
    image = generate(pipe)
    pipe.save_pretrained(tmp_path)
    return pipe, image, without_lora, tmp_path


def test_round_trip_reproduces_the_poster(saved):
    pipe, image, without_lora, folder = saved
    loaded = MPDSPosterPipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.actors == ["bob"]
    assert loaded.controlnet is not None
    assert loaded.get_active_adapters() == ["poster_style"]
    assert not np.array_equal(image, without_lora)  # the LoRA matters...
    assert np.array_equal(generate(loaded), image)  # ...and comes back
    assert np.array_equal(generate(pipe), image)  # saving left the original pipeline as it was


def test_lora_comes_back_as_an_adapter_whose_scale_can_change(saved):
    _, image, without_lora, folder = saved
    loaded = MPDSPosterPipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    loaded.set_adapters(["poster_style"], adapter_weights=[0.0])
    assert np.allclose(generate(loaded), without_lora, atol=1e-5)
    loaded.set_adapters(["poster_style"], adapter_weights=[0.5])
    half = generate(loaded)
    assert not np.allclose(half, without_lora) and not np.allclose(half, image)


def test_bundle_layout_and_no_peft_keys_in_the_unet(saved):
    _, _, _, folder = saved
    with safe_open(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"), "pt") as f:
        unet_keys = list(f.keys())
    assert unet_keys and not [k for k in unet_keys if "lora" in k or "base_layer" in k]
    with safe_open(os.path.join(folder, "lora", "poster_style", "pytorch_lora_weights.safetensors"), "pt") as f:
        lora_keys = list(f.keys())
    assert lora_keys and all("lora" in k for k in lora_keys)
    with open(os.path.join(folder, "lora", "adapters.json")) as f:
        assert json.load(f) == {"adapters": ["poster_style"], "active": ["poster_style"]}
    with safe_open(os.path.join(folder, "actors", "bob", "learned_embeds.safetensors"), "pt") as f:
        assert list(f.keys()) == ["<bob>"]
    assert os.path.isfile(os.path.join(folder, "controlnet", "diffusion_pytorch_model.safetensors"))
    # The base text encoder and tokenizer do not carry the actor: it lives in actors/ only.
    with open(os.path.join(folder, "text_encoder", "config.json")) as f:
        assert json.load(f)["vocab_size"] == 514
    weight_files = [name for _, _, files in os.walk(folder) for name in files if name.endswith((".bin", ".pt", ".ckpt"))]
    assert weight_files == []


def test_plain_diffusers_is_pointed_to_mpds(saved):
    _, _, _, folder = saved
    with pytest.raises(ValueError, match="mpds_pipeline.py"):
        DiffusionPipeline.from_pretrained(folder)
    with open(os.path.join(folder, "mpds_pipeline.py")) as f:
        assert "pip install mpds" in f.read()


def test_model_card(saved):
    _, _, _, folder = saved
    with open(os.path.join(folder, "README.md")) as f:
        card = f.read()
    assert "base_model: stable-diffusion-v1-5/stable-diffusion-v1-5" in card
    assert "license: creativeml-openrail-m" in card
    assert "- mpds" in card and "pip install mpds" in card
    assert "poster_style" in card and "<bob>" in card


def test_fused_lora_is_not_saved(pipe, tmp_path):
    add_random_lora(pipe)
    pipe.fuse_lora()
    with pytest.raises(ValueError, match="unfuse_lora"):
        pipe.save_pretrained(tmp_path)


def _stable_diffusion(tmp_path):
    from diffusers import StableDiffusionPipeline

    components = build_components(size="tiny", with_controlnet=False)
    components.pop("controlnet")
    return StableDiffusionPipeline(**components, requires_safety_checker=False)


def test_loads_a_stable_diffusion_folder_and_takes_a_controlnet(tmp_path):
    base = _stable_diffusion(tmp_path)
    base.save_pretrained(tmp_path / "sd")
    pipe = MPDSPosterPipeline.from_pretrained(tmp_path / "sd", controlnet=build_controlnet(base.unet))
    pipe.set_progress_bar_config(disable=True)
    output = pipe("a movie poster", caption="NIGHT SHIFT", height=32, width=32, num_inference_steps=2, output_type="np")
    assert output.images.shape == (1, 32, 32, 3) and len(output.control_images) == 1


def test_from_pipe_reuses_a_stable_diffusion_pipelines_components(tmp_path):
    base = _stable_diffusion(tmp_path)
    pipe = MPDSPosterPipeline.from_pipe(base, controlnet=build_controlnet(base.unet))
    assert pipe.unet is base.unet and pipe.vae is base.vae and pipe.controlnet is not None
