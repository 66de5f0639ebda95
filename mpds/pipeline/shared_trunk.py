"""One UNet pass for guidance branches of which two differ only by ControlNet residuals.

eps(p,a) and eps(p,a,c) see the same latents, timestep and prompt; the ControlNet's residuals enter the UNet only
after its down and middle blocks (added to the skip connections and to the middle block's output). So those blocks,
the UNet's "trunk", give the same result for both branches, and are run once for them; the up blocks then run on
every branch's row, each with its own residuals. The sum computed is the same as running the full batch; it saves
one branch's trunk per step.

`supports_shared_trunk` says which UNets this covers (Stable Diffusion's `UNet2DConditionModel` and the like);
the pipeline calls the UNet as usual for any other.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from diffusers import UNet2DConditionModel


def supports_shared_trunk(unet: torch.nn.Module, cross_attention_kwargs: Optional[dict] = None) -> bool:
    """Whether `unet_with_shared_trunk` computes what `unet(...)` computes for this UNet and these kwargs.

    It covers a `UNet2DConditionModel` conditioned on text only (no class, addition or image embeddings, no
    GLIGEN) and cross-attention kwargs without a LoRA `scale` (which `unet.forward` applies itself). A UNet with an
    accelerate hook on its forward (`enable_model_cpu_offload`, device maps) is left to its own forward, which the
    hook needs to run (it moves the weights to the device).
    """
    if type(unet) is not UNet2DConditionModel or getattr(unet, "_hf_hook", None) is not None:
        return False
    config = unet.config
    return (
        config.class_embed_type is None
        and config.num_class_embeds is None
        and config.addition_embed_type is None
        and config.encoder_hid_dim_type is None
        and config.attention_type == "default"
        and config.time_cond_proj_dim is None
        and not config.center_input_sample
        and "scale" not in (cross_attention_kwargs or {})
    )


def unet_with_shared_trunk(
    unet: UNet2DConditionModel,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    source_rows: Sequence[int],
    down_residuals: Optional[Sequence[torch.Tensor]] = None,
    mid_residual: Optional[torch.Tensor] = None,
    trunk_attention_kwargs: Optional[dict[str, Any]] = None,
    attention_kwargs: Optional[dict[str, Any]] = None,
) -> torch.Tensor:
    """The UNet's noise prediction for `len(source_rows)` rows, whose trunk inputs are rows of `sample`.

    Args:
        sample, encoder_hidden_states: the trunk's rows (each distinct input once).
        timestep: the step's timestep.
        source_rows: for each output row, the trunk row it continues from.
        down_residuals, mid_residual: ControlNet residuals for the output rows (zeros where a row has none).
        trunk_attention_kwargs, attention_kwargs: cross-attention kwargs of the trunk's rows and of the output rows.

    Returns:
        The noise prediction of each output row, as `unet(sample[source_rows], ...)` with the residuals would give.
    """
    index = torch.as_tensor(list(source_rows), device=sample.device)
    upsample_factor = 2**unet.num_upsamplers
    forward_upsample_size = any(dim % upsample_factor != 0 for dim in sample.shape[-2:])

    # The trunk: time embedding, input convolution, down blocks and middle block, once per distinct row.
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep))
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)
    hidden = unet.conv_in(sample)
    skips = (hidden,)
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            hidden, block_skips = block(
                hidden_states=hidden, temb=emb, encoder_hidden_states=encoder_hidden_states,
                cross_attention_kwargs=trunk_attention_kwargs,
            )
        else:
            hidden, block_skips = block(hidden_states=hidden, temb=emb)
        skips += block_skips
    if unet.mid_block is not None:
        if getattr(unet.mid_block, "has_cross_attention", False):
            hidden = unet.mid_block(
                hidden, emb, encoder_hidden_states=encoder_hidden_states, cross_attention_kwargs=trunk_attention_kwargs
            )
        else:
            hidden = unet.mid_block(hidden, emb)

    # Every output row continues from its trunk row, with its own residuals.
    skips = tuple(skip.index_select(0, index) for skip in skips)
    hidden = hidden.index_select(0, index)
    if down_residuals is not None:
        skips = tuple(skip + residual for skip, residual in zip(skips, down_residuals))
    if mid_residual is not None:
        hidden = hidden + mid_residual
    emb = emb.index_select(0, index)
    encoder_hidden_states = encoder_hidden_states.index_select(0, index)

    # The up blocks and output layers, on every output row.
    upsample_size = None
    for k, block in enumerate(unet.up_blocks):
        block_skips, skips = skips[-len(block.resnets):], skips[: -len(block.resnets)]
        if k < len(unet.up_blocks) - 1 and forward_upsample_size:
            upsample_size = skips[-1].shape[2:]
        if getattr(block, "has_cross_attention", False):
            hidden = block(
                hidden_states=hidden, temb=emb, res_hidden_states_tuple=block_skips,
                encoder_hidden_states=encoder_hidden_states, cross_attention_kwargs=attention_kwargs,
                upsample_size=upsample_size,
            )
        else:
            hidden = block(hidden_states=hidden, temb=emb, res_hidden_states_tuple=block_skips, upsample_size=upsample_size)
    if unet.conv_norm_out is not None:
        hidden = unet.conv_act(unet.conv_norm_out(hidden))
    return unet.conv_out(hidden)
