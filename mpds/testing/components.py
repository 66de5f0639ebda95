"""Random-weight components for tests, demos and benchmarks, built locally (no download).

Two sizes share one set of builders:

- `"tiny"`: a few thousand parameters, 32x32 to 64x64 images, for tests that run in seconds on a CPU;
- `"sd15"`: the layer sizes of Stable Diffusion 1.5 and `lllyasviel/sd-controlnet-canny` (random weights), for
  benchmarks whose timings should mean something.

Example:
    >>> from mpds.testing.components import build_poster_pipeline
    >>> pipe = build_poster_pipeline(size="tiny", with_controlnet=True)
    >>> image = pipe("a movie poster", num_inference_steps=2, height=32, width=32).images[0]
"""

from __future__ import annotations

import tempfile

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

SIZES = ("tiny", "sd15")

# Cross-attention width of each size: the text encoder's hidden size, which the UNet and ControlNet attend to.
_TEXT_WIDTH = {"tiny": 32, "sd15": 768}


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"`size` must be one of {SIZES}, got {size!r}.")


def _byte_to_unicode() -> dict[int, str]:
    """The byte-level alphabet of CLIP's BPE: printable bytes stand for themselves, the rest are shifted past 255."""
    printable = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    alphabet, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            alphabet[byte] = chr(byte)
        else:
            alphabet[byte] = chr(256 + shifted)
            shifted += 1
    return alphabet


def build_tokenizer() -> CLIPTokenizer:
    """A `CLIPTokenizer` with a byte-level vocabulary and no merges: every character is one token.

    It tokenizes any text (Latin or not) without a download; special tokens are `<|startoftext|>` (0) and
    `<|endoftext|>` (1, also the padding token).
    """
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    characters = list(_byte_to_unicode().values())
    for character in characters:
        vocab[character] = len(vocab)
    for character in characters:  # the last character of a word carries the end-of-word mark
        vocab[character + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_text_encoder(size: str = "tiny", seed: int = 0) -> CLIPTextModel:
    _check_size(size)
    torch.manual_seed(seed)
    if size == "tiny":
        config = CLIPTextConfig(
            hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=514,
            bos_token_id=0, eos_token_id=1, pad_token_id=1, max_position_embeddings=77,
        )
    else:
        config = CLIPTextConfig(
            hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12, vocab_size=49408,
            bos_token_id=0, eos_token_id=1, pad_token_id=1, max_position_embeddings=77,
        )
    return CLIPTextModel(config).eval()


def build_unet(size: str = "tiny", seed: int = 0) -> UNet2DConditionModel:
    _check_size(size)
    torch.manual_seed(seed)
    if size == "tiny":
        return UNet2DConditionModel(
            block_out_channels=(8, 16),
            layers_per_block=1,
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=_TEXT_WIDTH[size],
            attention_head_dim=4,
            norm_num_groups=4,
        ).eval()
    # The defaults of UNet2DConditionModel are Stable Diffusion 1.x's, except the text width.
    return UNet2DConditionModel(sample_size=64, cross_attention_dim=_TEXT_WIDTH[size]).eval()


def build_controlnet(unet: UNet2DConditionModel, size: str = "tiny", seed: int = 0) -> ControlNetModel:
    """A ControlNet shaped like `unet`'s encoder, with random weights (not a copy of the UNet's)."""
    _check_size(size)
    torch.manual_seed(seed)
    # The conditioning embedding must shrink the control image by the VAE's factor (2 for tiny, 8 for sd15).
    conditioning_channels = (16, 32) if size == "tiny" else (16, 32, 96, 256)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=conditioning_channels)
    # from_unet copies the UNet's weights and zero-initialises the output convolutions, which would make the
    # ControlNet a no-op; random weights make its effect visible in tests.
    for parameter in controlnet.parameters():
        torch.nn.init.normal_(parameter, std=0.02 if size == "sd15" else 0.2)
    return controlnet.eval()


def build_vae(size: str = "tiny", seed: int = 0) -> AutoencoderKL:
    _check_size(size)
    torch.manual_seed(seed)
    if size == "tiny":
        return AutoencoderKL(
            block_out_channels=(8, 16),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
            norm_num_groups=4,
            sample_size=32,
        ).eval()
    return AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    ).eval()


def build_scheduler() -> DDIMScheduler:
    """Stable Diffusion 1.5's noise schedule, with DDIM steps (deterministic: no noise is added per step)."""
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build_components(size: str = "tiny", with_controlnet: bool = True, seed: int = 0) -> dict:
    """All components of an `MPDSPosterPipeline`, keyed by their pipeline names."""
    unet = build_unet(size, seed)
    return {
        "vae": build_vae(size, seed),
        "text_encoder": build_text_encoder(size, seed),
        "tokenizer": build_tokenizer(),
        "unet": unet,
        "controlnet": build_controlnet(unet, size, seed + 1) if with_controlnet else None,
        "scheduler": build_scheduler(),
        "safety_checker": None,
        "feature_extractor": None,
    }


def build_poster_pipeline(size: str = "tiny", with_controlnet: bool = True, seed: int = 0):
    """A whole `MPDSPosterPipeline` with random weights, on the CPU in float32."""
    from mpds.pipeline import MPDSPosterPipeline

    pipe = MPDSPosterPipeline(**build_components(size, with_controlnet, seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_actor_embedding(size: str = "tiny", name: str = "actor", seed: int = 0, directory: str | None = None) -> str:
    """Write a random textual-inversion embedding `{"<name>": tensor}` to `directory/learned_embeds.safetensors`.

    Returns the directory (a new temporary one when `directory` is None), ready for `pipe.load_actor`.
    """
    from safetensors.torch import save_file

    _check_size(size)
    directory = directory or tempfile.mkdtemp(prefix="mpds-actor-")
    generator = torch.Generator().manual_seed(seed)
    embedding = torch.randn(1, _TEXT_WIDTH[size], generator=generator)
    save_file({f"<{name}>": embedding}, f"{directory}/learned_embeds.safetensors")
    return directory


def add_random_lora(pipe, adapter_name: str = "poster_style", rank: int = 4, seed: int = 0) -> None:
    """Attach a LoRA adapter with random (non-zero) weights to `pipe.unet`, as a trained one would be."""
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    pipe.unet.add_adapter(config, adapter_name=adapter_name)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in pipe.unet.named_parameters():
            if "lora_" in name and f".{adapter_name}." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
