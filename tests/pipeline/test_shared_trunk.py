"""eps(p,a) and eps(p,a,c) share the UNet's down and middle blocks: the same predictions as the plain UNet call."""

import pytest
import torch

from mpds.pipeline.shared_trunk import supports_shared_trunk, unet_with_shared_trunk
from mpds.testing.components import build_controlnet, build_unet

TEXT = 32  # the tiny text encoder's width


@pytest.mark.parametrize("latent_size", [(8, 8), (9, 11)])  # (9, 11): the up blocks need explicit upsample sizes
@torch.no_grad()
def test_shared_trunk_equals_the_unet_on_the_expanded_batch(latent_size):
    unet = build_unet()
    controlnet = build_controlnet(unet)
    generator = torch.Generator().manual_seed(0)
    trunk_sample = torch.randn(4, 4, *latent_size, generator=generator)  # 2 trunk inputs x 2 images each
    trunk_embeds = torch.randn(4, 77, TEXT, generator=generator)
    source_rows = [0, 1, 2, 3, 2, 3]  # branch 0, branch 1, branch 1 again with the ControlNet's residuals
    t = torch.tensor(500)
    control = torch.rand(2, 3, latent_size[0] * 2, latent_size[1] * 2, generator=generator)
    down, mid = controlnet(trunk_sample[2:], t, encoder_hidden_states=trunk_embeds[2:], controlnet_cond=control,
                           return_dict=False)
    down = [torch.cat([torch.zeros_like(d), torch.zeros_like(d), d]) for d in down]
    mid = torch.cat([torch.zeros_like(mid), torch.zeros_like(mid), mid])

    shared = unet_with_shared_trunk(unet, trunk_sample, t, trunk_embeds, source_rows, down, mid)
    plain = unet(trunk_sample[source_rows], t, encoder_hidden_states=trunk_embeds[source_rows],
                 down_block_additional_residuals=down, mid_block_additional_residual=mid).sample

    assert shared.shape == plain.shape == (6, 4, *latent_size)
    assert torch.allclose(shared, plain, atol=1e-5), (shared - plain).abs().max()
    assert not torch.allclose(shared[2:4], shared[4:6])  # the residuals do reach the last branch


def test_unets_and_kwargs_the_shared_trunk_does_not_cover_get_the_plain_call():
    unet = build_unet()
    assert supports_shared_trunk(unet)
    assert not supports_shared_trunk(unet, {"scale": 0.5})  # a LoRA scale, which unet.forward applies itself
    unet.register_to_config(addition_embed_type="text")
    assert not supports_shared_trunk(unet)


def test_a_unet_with_an_offload_hook_keeps_its_own_forward():
    from accelerate.hooks import ModelHook, add_hook_to_module

    unet = build_unet()
    add_hook_to_module(unet, ModelHook())  # what enable_model_cpu_offload puts on the UNet's forward
    assert not supports_shared_trunk(unet)


def test_pipeline_with_shared_trunk_equals_the_plain_batch_for_several_images(pipe):
    arguments = dict(prompt="a movie poster of {actor}, title", caption="NIGHT SHIFT", actor="bob",
                     guidance_scale=5.0, actor_guidance_scale=3.0, caption_guidance_scale=2.0, height=32, width=32,
                     num_inference_steps=3, num_images_per_prompt=2, output_type="latent")
    trunk_rows = []
    pipe.unet.conv_in.register_forward_pre_hook(lambda module, args: trunk_rows.append(args[0].shape[0]))
    shared = pipe(**arguments, generator=torch.Generator().manual_seed(0)).images
    # A LoRA scale of 1 changes nothing but keeps the pipeline on the plain UNet call.
    plain = pipe(**arguments, cross_attention_kwargs={"scale": 1.0}, generator=torch.Generator().manual_seed(0)).images
    assert trunk_rows == [6] * 3 + [8] * 3  # 3 trunks x 2 images, then 4 branches x 2 images
    assert shared.shape == (2, 4, 16, 16)
    assert torch.allclose(shared, plain, atol=1e-5), (shared - plain).abs().max()
