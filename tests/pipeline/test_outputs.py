"""Outputs, batching, determinism and callbacks of `MPDSPosterPipeline`."""

import numpy as np
import PIL.Image
import torch

from mpds.pipeline import PosterCaption

SIZE = 32  # pixels: the tiny VAE makes 16x16 latents


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)

CAPTION = PosterCaption("NIGHT SHIFT", credits=("ANNA LEE",))


def test_output_type_np_pil_and_latent(pipe, call_kwargs):
    call_kwargs.pop("output_type")
    as_np = pipe("a movie poster", caption=CAPTION, generator=seeded(), output_type="np", **call_kwargs)
    as_pil = pipe("a movie poster", caption=CAPTION, generator=seeded(), output_type="pil", **call_kwargs)
    as_latent = pipe("a movie poster", caption=CAPTION, generator=seeded(), output_type="latent", **call_kwargs)

    assert as_np.images.shape == (1, SIZE, SIZE, 3) and as_np.images.dtype == np.float32
    assert isinstance(as_pil.images[0], PIL.Image.Image) and as_pil.images[0].size == (SIZE, SIZE)
    assert np.array_equal(np.asarray(as_pil.images[0]), (as_np.images[0] * 255).round().astype(np.uint8))
    assert as_latent.images.shape == (1, 4, SIZE // 2, SIZE // 2)


def test_returns_the_control_images_used(pipe, call_kwargs):
    output = pipe("a movie poster", caption=CAPTION, generator=seeded(), num_images_per_prompt=2, **call_kwargs)
    assert len(output.control_images) == 2
    edges = np.asarray(output.control_images[0])
    assert edges.shape == (SIZE, SIZE, 3) and edges.max() == 255

    without_caption = pipe("a movie poster", generator=seeded(), **call_kwargs)
    assert without_caption.control_images is None


def test_return_dict_false_gives_a_tuple(pipe, call_kwargs):
    images, control_images, nsfw = pipe("a movie poster", caption=CAPTION, generator=seeded(), return_dict=False, **call_kwargs)
    assert images.shape == (1, SIZE, SIZE, 3) and len(control_images) == 1 and nsfw is None


def test_num_images_per_prompt_and_prompt_lists(pipe, call_kwargs):
    output = pipe(["a movie poster", "a horror poster"], generator=seeded(), num_images_per_prompt=2, **call_kwargs)
    assert output.images.shape == (4, SIZE, SIZE, 3)
    # Each image has its own noise.
    assert not np.allclose(output.images[0], output.images[1])


def test_same_generator_seed_gives_the_same_image_and_another_seed_does_not(pipe, call_kwargs):
    first = pipe("a movie poster of {actor}", actor="bob", caption=CAPTION, generator=seeded(1), **call_kwargs).images
    again = pipe("a movie poster of {actor}", actor="bob", caption=CAPTION, generator=seeded(1), **call_kwargs).images
    other = pipe("a movie poster of {actor}", actor="bob", caption=CAPTION, generator=seeded(2), **call_kwargs).images
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_given_latents_replace_the_generator(pipe, call_kwargs):
    latents = torch.randn(1, 4, SIZE // 2, SIZE // 2, generator=seeded(3))
    first = pipe("a movie poster", latents=latents, generator=seeded(0), **call_kwargs).images
    second = pipe("a movie poster", latents=latents, generator=seeded(9), **call_kwargs).images
    assert np.array_equal(first, second)


def test_callback_on_step_end_sees_every_step_and_can_replace_latents(pipe, call_kwargs):
    seen = []

    def record(pipeline, step, timestep, tensors):
        seen.append((step, tensors["latents"].shape))
        return {}

    pipe("a movie poster", generator=seeded(), callback_on_step_end=record, **call_kwargs)
    assert seen == [(0, (1, 4, SIZE // 2, SIZE // 2)), (1, (1, 4, SIZE // 2, SIZE // 2))]

    def zero_latents(pipeline, step, timestep, tensors):
        return {"latents": torch.zeros_like(tensors["latents"])}

    kwargs = dict(call_kwargs, output_type="latent")
    zeroed = pipe("a movie poster", generator=seeded(), callback_on_step_end=zero_latents, **kwargs).images
    assert torch.count_nonzero(zeroed) == 0


def test_negative_prompt_changes_the_image(pipe, call_kwargs):
    plain = pipe("a movie poster", generator=seeded(), **call_kwargs).images
    negative = pipe("a movie poster", negative_prompt="blurry", generator=seeded(), **call_kwargs).images
    assert not np.allclose(plain, negative)


def test_pipeline_without_controlnet_generates_without_caption(pipe_without_controlnet, call_kwargs):
    output = pipe_without_controlnet("a movie poster", generator=seeded(), **call_kwargs)
    assert output.images.shape == (1, SIZE, SIZE, 3) and output.control_images is None


def test_empty_caption_turns_the_caption_branch_off(pipe, call_kwargs):
    calls = []
    pipe.controlnet.register_forward_pre_hook(lambda module, args: calls.append(1))
    output = pipe("a movie poster", caption=PosterCaption(""), generator=seeded(), **call_kwargs)
    assert calls == [] and output.control_images is None
