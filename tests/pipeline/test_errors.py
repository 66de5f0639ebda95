"""Every invalid input named in issue 3 fails with a ValueError that says what was given and what is allowed."""

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

import torch
from mpds.pipeline import MPDSPosterPipeline, PosterCaption

SIZE = 32  # pixels: the tiny VAE makes 16x16 latents


@pytest.mark.parametrize("height, width", [(36, 32), (32, 20)])
def test_height_and_width_must_be_multiples_of_8(pipe, height, width):
    with pytest.raises(ValueError, match=rf"multiples of 8, got height={height} and width={width}"):
        pipe("a movie poster", height=height, width=width, num_inference_steps=1)


@pytest.mark.parametrize(
    "scale", ["guidance_scale", "actor_guidance_scale", "caption_guidance_scale", "controlnet_conditioning_scale"]
)
def test_negative_scales_are_rejected(pipe, scale):
    with pytest.raises(ValueError, match=rf"`{scale}` must be >= 0, got -1.0"):
        pipe("a movie poster", height=SIZE, width=SIZE, num_inference_steps=1, **{scale: -1.0})


def test_caption_without_controlnet(pipe_without_controlnet):
    with pytest.raises(ValueError, match="caption branch was requested .* no ControlNet"):
        pipe_without_controlnet("a movie poster", caption="NIGHT SHIFT", height=SIZE, width=SIZE, num_inference_steps=1)


def test_control_image_without_controlnet(pipe_without_controlnet):
    edges = Image.new("RGB", (SIZE, SIZE))
    with pytest.raises(ValueError, match="no ControlNet"):
        pipe_without_controlnet("a movie poster", control_image=edges, height=SIZE, width=SIZE, num_inference_steps=1)


def test_actor_field_without_actor(pipe):
    with pytest.raises(ValueError, match=r"holds \{actor\} but no `actor` was given.*\['bob'\]"):
        pipe("a poster of {actor}", height=SIZE, width=SIZE, num_inference_steps=1)


def test_unknown_actor_names_the_known_ones(pipe):
    with pytest.raises(ValueError, match=r"Unknown actor 'alice'; known actors: \['bob'\]"):
        pipe("a poster of {actor}", actor="alice", height=SIZE, width=SIZE, num_inference_steps=1)


@pytest.mark.parametrize("size", [(SIZE, SIZE + 8), (SIZE * 2, SIZE)])
def test_control_image_of_the_wrong_size(pipe, size):
    edges = Image.new("RGB", size)
    with pytest.raises(ValueError, match=rf"`control_image` is {size[0]}x{size[1]} .* poster is {SIZE}x{SIZE}"):
        pipe("a movie poster", control_image=edges, height=SIZE, width=SIZE, num_inference_steps=1)


def test_control_image_of_the_wrong_size_as_array(pipe):
    edges = np.zeros((SIZE, SIZE + 8, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="`control_image` is 40x32"):
        pipe("a movie poster", control_image=edges, height=SIZE, width=SIZE, num_inference_steps=1)


def test_actor_weights_load_from_safetensors_only(pipe, tmp_path):
    pickled = tmp_path / "learned_embeds.bin"
    torch.save({"<carl>": torch.zeros(1, 32)}, pickled)
    with pytest.raises(ValueError, match="`.safetensors` files only"):
        pipe.load_actor(pickled)
    with pytest.raises(ValueError, match="No learned_embeds.safetensors"):
        pipe.load_actor(tmp_path)


def test_actor_file_with_several_embeddings(pipe, tmp_path):
    save_file({"<a>": torch.zeros(1, 32), "<b>": torch.zeros(1, 32)}, tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match=r"one embedding under its token, got keys \['<a>', '<b>'\]"):
        pipe.load_actor(tmp_path / "two.safetensors")


def test_actor_name_already_loaded(pipe, tmp_path):
    save_file({"<bob>": torch.zeros(1, 32)}, tmp_path / "bob.safetensors")
    with pytest.raises(ValueError, match="already loaded"):
        pipe.load_actor(tmp_path / "bob.safetensors")


def test_pickle_weights_are_refused_on_save_and_load(pipe, tmp_path):
    with pytest.raises(ValueError, match="safetensors only"):
        pipe.save_pretrained(tmp_path, safe_serialization=False)
    with pytest.raises(ValueError, match="safetensors only"):
        MPDSPosterPipeline.from_pretrained(tmp_path, use_safetensors=False)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"control_guidance_start": 0.6, "control_guidance_end": 0.4}, "0 <= start < end <= 1"),
        ({"localized_attention_steps": 1.5}, r"fraction in \[0, 1\], got 1.5"),
        ({"actor_box": (0.5, 0.0, 0.4, 1.0)}, "left < right"),
        ({"output_type": "jpeg"}, "`output_type` must be one of"),
        ({"num_images_per_prompt": 0}, ">= 1, got 0"),
        ({"negative_prompt": ["a", "b"]}, "2 entries but `prompt` has 1"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, r"may name \['latents'\], got \['noise'\]"),
    ],
)
def test_other_invalid_arguments(pipe, arguments, message):
    with pytest.raises(ValueError, match=message):
        pipe("a movie poster", height=SIZE, width=SIZE, num_inference_steps=1, **arguments)


def test_caption_layout_must_be_known():
    with pytest.raises(ValueError, match=r"`layout` must be one of \['bottom', 'top'\], got 'left'"):
        PosterCaption("TITLE", layout="left")


def test_lora_and_embeddings_never_fall_back_to_pickle(pipe, tmp_path):
    from peft.utils import get_peft_model_state_dict

    from mpds.testing.components import add_random_lora

    add_random_lora(pipe, adapter_name="style")
    pipe.save_lora_weights(tmp_path / "lora", unet_lora_layers=get_peft_model_state_dict(pipe.unet, adapter_name="style"),
                           safe_serialization=False)
    assert (tmp_path / "lora" / "pytorch_lora_weights.bin").exists()
    with pytest.raises(OSError):
        pipe.load_lora_weights(tmp_path / "lora", adapter_name="pickled")
    torch.save({"<pickled>": torch.zeros(1, 32)}, tmp_path / "learned_embeds.bin")
    with pytest.raises(OSError):
        pipe.load_textual_inversion(str(tmp_path))
