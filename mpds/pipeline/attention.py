"""Localized cross-attention (the constraint of "Brush Your Text", Zhang et al. 2024, which MPDS integrates).

During the first steps of denoising, chosen prompt tokens may only attend to (be attended by) the pixels of a
region: the actor's token to the actor's box, caption words to the caption's text boxes. This is done by
multiplying those tokens' attention probabilities by a 0/1 region mask in the UNet's cross-attention layers.
Other tokens, self-attention, and all steps after the first ones use diffusers' standard attention.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

Box = tuple[float, float, float, float]


def find_token_positions(token_ids: Sequence[int], pattern: Sequence[int]) -> list[int]:
    """Positions in `token_ids` covered by every occurrence of the token sequence `pattern`."""
    pattern = list(pattern)
    token_ids = list(token_ids)
    positions: list[int] = []
    if not pattern:
        return positions
    for start in range(len(token_ids) - len(pattern) + 1):
        if token_ids[start : start + len(pattern)] == pattern:
            positions.extend(range(start, start + len(pattern)))
    return positions


class LocalizedAttention:
    """Region masks for the prompt tokens of one UNet batch, handed to the attention processors.

    Args:
        region_masks: `(batch, tokens, height, width)` tensor of 0/1 at latent resolution; a token's row is all ones
            when it is not localized.
        store_attention_maps: keep each cross-attention layer's probabilities (averaged over heads) in
            `attention_maps`, for inspection and tests.
    """

    def __init__(self, region_masks: torch.Tensor | None, store_attention_maps: bool = False):
        self.region_masks = region_masks
        self.attention_maps: list[torch.Tensor] | None = [] if store_attention_maps else None
        self._by_resolution: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def is_active(self) -> bool:
        return self.region_masks is not None or self.attention_maps is not None

    def token_mask(self, num_pixels: int, dtype: torch.dtype) -> torch.Tensor | None:
        """The `(batch, num_pixels, tokens)` multiplier for a layer whose feature map has `num_pixels` pixels."""
        if self.region_masks is None:
            return None
        _, _, height, width = self.region_masks.shape
        # UNet feature maps are the latent grid halved some number of times (stride-2 convolutions round up).
        factor = round((height * width / num_pixels) ** 0.5)
        size = (-(-height // factor), -(-width // factor))
        if size[0] * size[1] != num_pixels:
            raise ValueError(f"Cannot match a {height}x{width} region mask to a feature map of {num_pixels} pixels.")
        if size not in self._by_resolution:
            # A pixel of a coarse map belongs to the region when at least half of the latent pixels it covers do.
            resized = F.adaptive_avg_pool2d(self.region_masks.float(), size) >= 0.5
            self._by_resolution[size] = resized.flatten(2).transpose(1, 2)
        return self._by_resolution[size].to(dtype)


class LocalizedAttnProcessor:
    """An attention processor that applies a `LocalizedAttention`'s masks to cross-attention probabilities.

    Without a `localized_attention` argument (or for self-attention) it is diffusers' `AttnProcessor2_0`.
    Install it with `unet.set_attn_processor(LocalizedAttnProcessor())`; the pipeline does this itself.
    """

    def __init__(self):
        self._standard = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        localized_attention: LocalizedAttention | None = None,
    ) -> torch.Tensor:
        is_cross_attention = encoder_hidden_states is not None
        if localized_attention is None or not localized_attention.is_active or not is_cross_attention:
            return self._standard(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if attn.spatial_norm is not None or attn.group_norm is not None or attention_mask is not None:
            raise ValueError("Localized attention supports plain cross-attention layers (no norms or masks).")

        residual = hidden_states
        is_feature_map = hidden_states.ndim == 4
        if is_feature_map:
            batch_size, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        batch_size, num_pixels, _ = hidden_states.shape
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)

        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probabilities = attn.get_attention_scores(query, key)  # (batch * heads, pixels, tokens)
        probabilities = probabilities.view(batch_size, attn.heads, num_pixels, -1)

        token_mask = localized_attention.token_mask(num_pixels, probabilities.dtype)
        if token_mask is not None:
            # Zeroing, not renormalizing: a localized token simply stops contributing outside its region.
            probabilities = probabilities * token_mask[:, None]
        if localized_attention.attention_maps is not None:
            localized_attention.attention_maps.append(probabilities.mean(dim=1).detach())

        hidden_states = torch.bmm(probabilities.flatten(0, 1), value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if is_feature_map:
            hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def box_mask(box: Box, height: int, width: int) -> torch.Tensor:
    """A `(height, width)` 0/1 mask of a box given as (left, top, right, bottom) fractions of the image."""
    left, top, right, bottom = box
    mask = torch.zeros(height, width)
    rows = slice(int(top * height), max(int(round(bottom * height)), int(top * height) + 1))
    columns = slice(int(left * width), max(int(round(right * width)), int(left * width) + 1))
    mask[rows, columns] = 1.0
    return mask


def build_region_masks(
    token_ids: torch.Tensor,
    localized_tokens: Sequence[tuple[Sequence[int], torch.Tensor]],
) -> torch.Tensor | None:
    """Region masks for a batch of tokenized prompts.

    Args:
        token_ids: `(batch, tokens)` ids of the prompts of one UNet batch.
        localized_tokens: pairs (token id pattern, `(height, width)` region mask); every occurrence of a pattern in
            a prompt is confined to its region.

    Returns:
        `(batch, tokens, height, width)` masks, or None when no pattern occurs in any prompt.
    """
    if not localized_tokens:
        return None
    height, width = localized_tokens[0][1].shape
    masks = torch.ones(token_ids.shape[0], token_ids.shape[1], height, width)
    found = False
    for row, ids in enumerate(token_ids.tolist()):
        for pattern, region in localized_tokens:
            for position in find_token_positions(ids, pattern):
                masks[row, position] = masks[row, position] * region
                found = True
    return masks if found else None
