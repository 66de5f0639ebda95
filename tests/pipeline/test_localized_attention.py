"""Localized attention: the actor's token and caption words attend only inside their regions in the first steps."""

import pytest
import torch
import torch.nn.functional as F

from mpds.pipeline import LocalizedAttention, PosterCaption, render_caption
from mpds.pipeline.attention import box_mask, build_region_masks, find_token_positions

LATENT = 16  # latent side of a 32x32 poster with the tiny VAE
ACTOR_BOX = (0.0, 0.0, 0.5, 0.5)


def _masses(maps, positions, region):
    """Attention mass of the tokens at `positions` inside and outside `region`, summed over layers and pixels."""
    inside = outside = 0.0
    for probabilities in maps:  # (batch, pixels, tokens)
        side = int(probabilities.shape[1] ** 0.5)
        in_region = (F.adaptive_avg_pool2d(region[None, None], side) >= 0.5).flatten()
        mass = probabilities[0][:, positions].sum(dim=1)
        inside += mass[in_region].sum().item()
        outside += mass[~in_region].sum().item()
    return inside, outside


@torch.no_grad()
def _attention_maps(pipe, token_ids, region_masks):
    localized = LocalizedAttention(region_masks, store_attention_maps=True)
    latents = torch.randn(1, 4, LATENT, LATENT, generator=torch.Generator().manual_seed(0))
    pipe.unet(latents, 500, encoder_hidden_states=pipe.text_encoder(token_ids)[0],
              cross_attention_kwargs={"localized_attention": localized})
    return localized.attention_maps


def test_actor_token_attention_mass_stays_inside_the_actor_box(pipe):
    token_ids = pipe.tokenizer("a movie poster of <bob>", padding="max_length", max_length=77, return_tensors="pt").input_ids
    pattern = pipe.tokenizer("<bob>", add_special_tokens=False).input_ids
    positions = find_token_positions(token_ids[0].tolist(), pattern)
    region = box_mask(ACTOR_BOX, LATENT, LATENT)
    assert len(positions) == 1

    free = _attention_maps(pipe, token_ids, None)
    confined = _attention_maps(pipe, token_ids, build_region_masks(token_ids, [(pattern, region)]))

    free_inside, free_outside = _masses(free, positions, region)
    confined_inside, confined_outside = _masses(confined, positions, region)
    assert free_outside > 0.5 * free_inside  # unconstrained, the token is attended everywhere
    assert confined_outside == 0.0 and confined_inside > 0.0
    # In the first cross-attention layer the other tokens' probabilities are untouched.
    others = [k for k in range(77) if k not in positions]
    assert torch.equal(free[0][..., others], confined[0][..., others])


def test_caption_words_are_confined_to_the_text_boxes(pipe):
    rendered = render_caption(PosterCaption("NIGHT SHIFT"), 32, 32)
    left, top, right, bottom = rendered.text_boxes["title"]
    region = box_mask((left / 32, top / 32, right / 32, bottom / 32), LATENT, LATENT)
    token_ids = pipe.tokenizer("a movie poster, title night shift", padding="max_length", max_length=77, return_tensors="pt").input_ids
    patterns = [pipe.tokenizer(word, add_special_tokens=False).input_ids for word in ("title", "night", "shift")]
    positions = [p for pattern in patterns for p in find_token_positions(token_ids[0].tolist(), pattern)]

    confined = _attention_maps(pipe, token_ids, build_region_masks(token_ids, [(p, region) for p in patterns]))
    inside, outside = _masses(confined, positions, region)
    assert outside == 0.0 and inside > 0.0


def test_pipeline_localizes_actor_and_caption_tokens_in_the_first_steps_only(pipe):
    captured, captured_in_trunk = [], []
    def cross_attention(blocks):
        return next(m for name, m in pipe.unet.named_modules() if name.startswith(blocks) and name.endswith("attn2"))

    cross_attention("up_blocks").register_forward_pre_hook(  # every branch's row
        lambda module, args, kwargs: captured.append(kwargs.get("localized_attention")), with_kwargs=True
    )
    cross_attention("down_blocks").register_forward_pre_hook(  # eps(p,a) and eps(p,a,c) share one row there
        lambda module, args, kwargs: captured_in_trunk.append(kwargs.get("localized_attention")), with_kwargs=True
    )
    pipe(
        "a movie poster of {actor}, title", caption=PosterCaption("NIGHT SHIFT"), actor="bob",
        guidance_scale=5.0, actor_guidance_scale=3.0, caption_guidance_scale=2.0, actor_box=ACTOR_BOX,
        height=32, width=32, num_inference_steps=10, localized_attention_steps=0.3, output_type="latent",
    )
    # attn2 runs once per step; localized during 30% of 10 steps.
    assert [c is not None for c in captured] == [True] * 3 + [False] * 7
    masks = captured[0].region_masks  # (branches, tokens, 16, 16): eps(0), eps(p), eps(p,a), eps(p,a,c)
    assert masks.shape == (4, 77, LATENT, LATENT)
    bob = pipe.tokenizer.convert_tokens_to_ids("<bob>")
    prompt_ids = pipe.tokenizer("a movie poster of <bob>, title", padding="max_length", max_length=77).input_ids
    bob_position = prompt_ids.index(bob)
    # The actor branches confine <bob> to the actor box; the unconditional branch confines nothing.
    assert torch.equal(masks[2, bob_position], box_mask(ACTOR_BOX, LATENT, LATENT))
    assert torch.equal(masks[3, bob_position], box_mask(ACTOR_BOX, LATENT, LATENT))
    assert bool((masks[0] == 1).all())
    # "title" is confined to the caption's text box in every branch that says it.
    title = find_token_positions(prompt_ids, pipe.tokenizer("title", add_special_tokens=False).input_ids)
    assert title and all(0 < masks[3, p].sum() < LATENT * LATENT for p in title)
    # The shared trunk's rows carry the same masks: eps(0), eps(p), and eps(p,a) for both actor branches.
    assert [c is not None for c in captured_in_trunk] == [True] * 3 + [False] * 7
    assert torch.equal(captured_in_trunk[0].region_masks, masks[:3])


def test_no_localization_without_actor_or_caption(pipe):
    captured = []
    attn2 = next(m for name, m in pipe.unet.named_modules() if name.endswith("attn2"))
    attn2.register_forward_pre_hook(
        lambda module, args, kwargs: captured.append(kwargs.get("localized_attention")), with_kwargs=True
    )
    pipe("a movie poster, title", height=32, width=32, num_inference_steps=3, output_type="latent")
    assert captured == [None, None, None]


def test_replaced_attention_processors_are_reported_not_ignored(pipe):
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe.unet.set_attn_processor(AttnProcessor2_0())
    arguments = {"actor": "bob", "height": 32, "width": 32, "num_inference_steps": 2, "output_type": "latent"}
    with pytest.raises(ValueError, match=r"needs mpds' LocalizedAttnProcessor in the UNet, but it has \['AttnProcessor2_0'\]"):
        pipe("a movie poster of {actor}", **arguments)
    # Without localization the standard processors are fine.
    pipe("a movie poster of {actor}", localized_attention_steps=0.0, **arguments)
