"""The multi-condition guidance of Appendix A, computed in one batch, against four separate UNet calls."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from mpds.pipeline import PosterCaption, render_caption

SIZE = 32
STEPS = 3
CAPTION = PosterCaption("NIGHT SHIFT", credits=("ANNA LEE",))


def _encode(pipe, text):
    ids = pipe.tokenizer(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    return pipe.text_encoder(ids)[0]


@torch.no_grad()
def reference_latents(pipe, texts, scales, latents, with_caption):
    """The formula written out: four UNet calls per step, the ControlNet on the caption branch only.

    texts: (negative, prompt without actor, prompt with actor); scales: (s1, s2, s3).
    """
    s1, s2, s3 = scales
    negative, without_actor, with_actor = (_encode(pipe, t) for t in texts)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(STEPS)
    control = None
    if with_caption:
        edges = np.asarray(render_caption(CAPTION, SIZE, SIZE).control_image, dtype=np.float32) / 255.0
        control = torch.from_numpy(edges).permute(2, 0, 1)[None]
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, t)

        def eps(embeds, residuals=None):
            down, mid = residuals if residuals is not None else (None, None)
            return pipe.unet(
                model_input, t, encoder_hidden_states=embeds,
                down_block_additional_residuals=down, mid_block_additional_residual=mid,
            ).sample

        eps_0 = eps(negative)
        eps_p = eps(without_actor)
        eps_pa = eps(with_actor)
        if with_caption:
            residuals = pipe.controlnet(
                model_input, t, encoder_hidden_states=with_actor, controlnet_cond=control,
                conditioning_scale=1.0, return_dict=False,
            )
            eps_pac = eps(with_actor, residuals)
        else:
            eps_pac = eps_pa
        noise = eps_0 + s1 * (eps_p - eps_0) + s2 * (eps_pa - eps_p) + s3 * (eps_pac - eps_pa)
        latents = scheduler.step(noise, t, latents).prev_sample
    return latents


def _initial_latents():
    return torch.randn(1, 4, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(42))


def _run(pipe, prompt, scales, caption, actor):
    s1, s2, s3 = scales
    return pipe(
        prompt, caption=caption, actor=actor, guidance_scale=s1, actor_guidance_scale=s2,
        caption_guidance_scale=s3, height=SIZE, width=SIZE, num_inference_steps=STEPS,
        latents=_initial_latents(), output_type="latent", localized_attention_steps=0.0,
    ).images


def test_batched_guidance_equals_four_separate_unet_calls(pipe):
    scales = (5.0, 3.0, 2.0)
    latents = _run(pipe, "a movie poster of {actor} in the rain", scales, CAPTION, "bob")
    expected = reference_latents(
        pipe,
        ("", "a movie poster of a person in the rain", "a movie poster of <bob> in the rain"),
        scales, _initial_latents(), with_caption=True,
    )
    assert torch.allclose(latents, expected, atol=1e-4), (latents - expected).abs().max()


def test_actor_without_field_in_prompt_is_appended_as_starring(pipe):
    scales = (4.0, 6.0, 2.0)
    latents = _run(pipe, "a movie poster", scales, CAPTION, "<bob>")
    expected = reference_latents(
        pipe, ("", "a movie poster", "a movie poster, starring <bob>"), scales, _initial_latents(), with_caption=True
    )
    assert torch.allclose(latents, expected, atol=1e-4)


@pytest.mark.parametrize(
    "case, scales, caption, actor, trunk_rows, unet_rows, controlnet_batches",
    [
        # all four branches are distinct; eps(p,a) and eps(p,a,c) share the UNet's down and middle blocks
        ("full", (5.0, 3.0, 2.0), CAPTION, "bob", 3, 4, 1),
        # with no actor, eps(p) and eps(p,a) are the same prediction
        ("no actor", (5.0, 3.0, 2.0), CAPTION, None, 2, 3, 1),
        # with no caption, eps(p,a,c) is eps(p,a): no ControlNet at all
        ("no caption", (5.0, 3.0, 2.0), None, "bob", 3, 3, 0),
        # s1 == 1 drops eps(0)
        ("s1 is one", (1.0, 3.0, 2.0), CAPTION, "bob", 2, 3, 1),
        # s1 == s2 == s3 is plain classifier-free guidance between eps(0) and eps(p,a,c)
        ("plain guidance", (6.0, 6.0, 6.0), CAPTION, "bob", 2, 2, 1),
    ],
)
def test_branch_pruning_gives_the_formula_with_fewer_rows(
    pipe, case, scales, caption, actor, trunk_rows, unet_rows, controlnet_batches
):
    trunk_batches, output_batches, controlnet_rows = [], [], []
    pipe.unet.conv_in.register_forward_pre_hook(lambda module, args: trunk_batches.append(args[0].shape[0]))
    pipe.unet.conv_out.register_forward_pre_hook(lambda module, args: output_batches.append(args[0].shape[0]))
    pipe.controlnet.register_forward_pre_hook(lambda module, args: controlnet_rows.append(args[0].shape[0]))

    prompt = "a movie poster of {actor}" if actor else "a movie poster"
    latents = _run(pipe, prompt, scales, caption, actor)

    with_actor = "a movie poster of <bob>" if actor else "a movie poster"
    without_actor = "a movie poster of a person" if actor else "a movie poster"
    expected = reference_latents(
        pipe, ("", without_actor, with_actor), scales, _initial_latents(), with_caption=caption is not None
    )
    assert torch.allclose(latents, expected, atol=1e-4), case
    # The pipeline's own calls come first: STEPS of them, before the reference's batch-1 calls.
    assert trunk_batches[:STEPS] == [trunk_rows] * STEPS
    assert output_batches[:STEPS] == [unet_rows] * STEPS
    assert controlnet_rows[:STEPS] == ([1] * STEPS if controlnet_batches else controlnet_rows[:0])


def test_controlnet_runs_only_inside_its_guidance_window(pipe):
    controlnet_calls = []
    pipe.controlnet.register_forward_pre_hook(lambda module, args: controlnet_calls.append(args[0].shape[0]))
    trunk_rows, unet_rows = [], []
    pipe.unet.conv_in.register_forward_pre_hook(lambda module, args: trunk_rows.append(args[0].shape[0]))
    pipe.unet.conv_out.register_forward_pre_hook(lambda module, args: unet_rows.append(args[0].shape[0]))
    pipe(
        "a movie poster of {actor}", caption=CAPTION, actor="bob", guidance_scale=5.0, actor_guidance_scale=3.0,
        caption_guidance_scale=2.0, height=SIZE, width=SIZE, num_inference_steps=4, output_type="latent",
        control_guidance_start=0.0, control_guidance_end=0.5,
    )
    assert controlnet_calls == [1, 1]
    # Outside the window the caption branch is eps(p,a) and is merged into it; inside, the two share a trunk.
    assert unet_rows == [4, 4, 3, 3]
    assert trunk_rows == [3, 3, 3, 3]
