"""`MPDSPosterPipeline`: movie posters from a prompt, a caption (through a ControlNet) and an actor (a learned token).

The model of the MPDS paper (its Fig. 3 and Appendix A). Each denoising step combines four noise predictions,
with s1 = `guidance_scale`, s2 = `actor_guidance_scale`, s3 = `caption_guidance_scale`:

    eps = eps(0) + s1 (eps(p) - eps(0)) + s2 (eps(p,a) - eps(p)) + s3 (eps(p,a,c) - eps(p,a))

eps(0) is the negative prompt, eps(p) the prompt without the actor, eps(p,a) the prompt with the actor's token,
eps(p,a,c) the same plus the caption ControlNet's residuals.
"""

import contextlib
import inspect
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import PIL.Image
import safetensors.torch
import torch
from diffusers import AutoencoderKL, ControlNetModel, DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from diffusers.loaders import StableDiffusionLoraLoaderMixin, TextualInversionLoaderMixin
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput, logging, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer
from transformers.image_processing_utils import BaseImageProcessor

from .attention import LocalizedAttention, LocalizedAttnProcessor, box_mask, build_region_masks
from .caption import PosterCaption, RenderedCaption, render_caption
from .shared_trunk import supports_shared_trunk, unet_with_shared_trunk

logger = logging.get_logger(__name__)

ACTOR_FIELD = "{actor}"
CAPTION_KEYWORDS = ("title", "text", "poster")
ACTOR_FILE = "learned_embeds.safetensors"
LORA_FOLDER = "lora"
ACTORS_FOLDER = "actors"
LORA_INDEX = "adapters.json"
DEFAULT_BASE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
# The bundle's model_index.json names its class as [module, class] with this module beside it, diffusers' way of
# declaring custom pipeline code. The module only explains how to load the bundle: plain
# `DiffusionPipeline.from_pretrained` stops there (asking to inspect it), instead of failing on an unknown class.
LOADER_MODULE = "mpds_pipeline"
LOADER_MODULE_TEXT = """\"\"\"This folder is an mpds `MPDSPosterPipeline` bundle; it loads with the mpds library, not plain diffusers.

    pip install mpds

    from mpds import MPDSPosterPipeline
    pipe = MPDSPosterPipeline.from_pretrained("<this folder or Hub repo>")

`MPDSPosterPipeline.from_pretrained` never runs this file.
\"\"\"

raise ImportError(
    "This is an mpds MPDSPosterPipeline bundle: install mpds (`pip install mpds`) and load it with "
    "`mpds.MPDSPosterPipeline.from_pretrained(...)`; plain `DiffusionPipeline.from_pretrained` would miss its "
    "LoRA and actors."
)
"""

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import ControlNetModel
        >>> from mpds import MPDSPosterPipeline, PosterCaption

        >>> controlnet = ControlNetModel.from_pretrained("lllyasviel/sd-controlnet-canny", torch_dtype=torch.float16)
        >>> pipe = MPDSPosterPipeline.from_pretrained(
        ...     "stable-diffusion-v1-5/stable-diffusion-v1-5", controlnet=controlnet, torch_dtype=torch.float16
        ... ).to("cuda")
        >>> pipe.load_actor("path/to/actor_embedding", name="lead")
        >>> output = pipe(
        ...     "a noir movie poster of {actor} in a rainy street, title at the bottom",
        ...     caption=PosterCaption("NIGHT SHIFT", credits=("DIRECTED BY A. SMITH",)),
        ...     actor="lead",
        ...     generator=torch.Generator("cuda").manual_seed(0),
        ... )
        >>> output.images[0].save("poster.png")
        >>> output.control_images[0].save("poster_control.png")
        ```
"""


@dataclass
class MPDSPosterPipelineOutput(BaseOutput):
    """Output of `MPDSPosterPipeline`.

    Attributes:
        images: the posters, as PIL images, a numpy array or latents (see `output_type`).
        control_images: the Canny edge images fed to the ControlNet (one per poster), or None with no caption branch.
        nsfw_content_detected: the safety checker's verdicts, or None without a safety checker.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    control_images: list[PIL.Image.Image] | None
    nsfw_content_detected: list[bool] | None


@dataclass(frozen=True)
class _Branch:
    """One of the four conditions of the guidance formula: which prompts it encodes and whether it has residuals."""

    texts: tuple[str, ...]
    uses_controlnet: bool


def _guidance_plan(branches: list[_Branch], coefficients: list[float]) -> list[tuple[_Branch, float]]:
    """The branches to compute and their weights.

    The formula is rewritten as a weighted sum, eps = sum_k w_k eps_k, with w = (1 - s1, s1 - s2, s2 - s3, s3).
    Branches that would compute the same prediction (same prompts, same residuals) are computed once with their
    weights added; branches whose weight is zero are not computed. The result is the same sum, exactly.
    """
    plan: dict[_Branch, float] = {}
    for branch, coefficient in zip(branches, coefficients):
        plan[branch] = plan.get(branch, 0.0) + coefficient
    return [(branch, weight) for branch, weight in plan.items() if weight != 0.0]


@contextlib.contextmanager
def _without_peft_layers(*models: torch.nn.Module):
    """Temporarily put each PEFT-wrapped layer's base layer back in its place, so `state_dict` has no PEFT keys."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    swapped = []
    for model in models:
        if model is None:
            continue
        for name, module in list(model.named_modules()):
            if isinstance(module, BaseTunerLayer):
                if module.merged:
                    raise ValueError(
                        f"LoRA weights are fused into {type(model).__name__} ({name}); call `pipe.unfuse_lora()` "
                        "before saving: the bundle keeps the base weights and the LoRA apart."
                    )
                parent_name, _, child_name = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                swapped.append((parent, child_name, module))
    try:
        for parent, child_name, module in swapped:
            setattr(parent, child_name, module.get_base_layer())
        yield
    finally:
        for parent, child_name, module in swapped:
            setattr(parent, child_name, module)


class MPDSPosterPipeline(DiffusionPipeline, StableDiffusionMixin, TextualInversionLoaderMixin, StableDiffusionLoraLoaderMixin):
    r"""Multi-condition movie-poster generation: text prompt, poster caption (ControlNet) and actor (textual inversion).

    Loaders: [`~loaders.TextualInversionLoaderMixin.load_textual_inversion`] (and `load_actor` for actors),
    [`~loaders.StableDiffusionLoraLoaderMixin.load_lora_weights`] / `save_lora_weights`.

    Args:
        vae ([`AutoencoderKL`]): encodes and decodes images to and from latents.
        text_encoder ([`~transformers.CLIPTextModel`]): the frozen text encoder.
        tokenizer ([`~transformers.CLIPTokenizer`]): its tokenizer.
        unet ([`UNet2DConditionModel`]): the denoiser.
        scheduler ([`SchedulerMixin`]): the noise scheduler.
        controlnet ([`ControlNetModel`], *optional*): the caption ControlNet (Canny edges); without it the caption
            branch is off.
        safety_checker ([`StableDiffusionSafetyChecker`], *optional*) and feature_extractor
            (a CLIP image processor, *optional*): Stable Diffusion's safety checker and its processor.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["controlnet", "safety_checker", "feature_extractor"]
    _exclude_from_cpu_offload = ["safety_checker"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        controlnet: ControlNetModel | None = None,
        safety_checker: StableDiffusionSafetyChecker | None = None,
        feature_extractor: BaseImageProcessor | None = None,
        requires_safety_checker: bool = False,
    ):
        super().__init__()
        if safety_checker is not None and feature_extractor is None:
            raise ValueError("A `safety_checker` needs a `feature_extractor`; pass both, or `safety_checker=None`.")
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            controlnet=controlnet,
            safety_checker=safety_checker,
            feature_extractor=feature_extractor,
        )
        self.register_to_config(requires_safety_checker=requires_safety_checker)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.control_image_processor = VaeImageProcessor(
            vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False
        )
        # Localized attention needs its processor in the UNet's attention layers (it is diffusers' default
        # processor whenever no localization is asked for).
        self.unet.set_attn_processor(LocalizedAttnProcessor())
        self._actors: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------------------------------------------------
    # Actors
    # ------------------------------------------------------------------------------------------------------------

    @property
    def actors(self) -> list[str]:
        """Names of the loaded actors; each is used in prompts through its token `<name>`."""
        return sorted(self._actors)

    def load_actor(self, pretrained_model_name_or_path: str | os.PathLike, name: str | None = None, **kwargs) -> str:
        """Load an actor's textual-inversion embedding (safetensors) and register its token `<name>`.

        Args:
            pretrained_model_name_or_path: a `.safetensors` file, a folder holding `learned_embeds.safetensors`,
                or a Hub repo id holding it.
            name: the actor's name; by default the token stored in the file without its brackets, or the folder name.
            kwargs: passed to `huggingface_hub.hf_hub_download` for repo ids (`revision`, `token`, `cache_dir`...).

        Returns:
            The actor's name.

        Raises:
            ValueError: for a file that is not safetensors, a file without exactly one embedding, or a name in use.

        Example:
            >>> pipe.load_actor("actors/lead")  # doctest: +SKIP
            'lead'
        """
        path = os.fspath(pretrained_model_name_or_path)
        if os.path.isfile(path):
            if not path.endswith(".safetensors"):
                raise ValueError(f"Actor embeddings load from `.safetensors` files only, got {path!r}.")
            weights_file = path
        elif os.path.isdir(path):
            weights_file = os.path.join(path, ACTOR_FILE)
            if not os.path.isfile(weights_file):
                raise ValueError(f"No {ACTOR_FILE} in {path!r} (actor embeddings load from safetensors only).")
        else:
            from huggingface_hub import hf_hub_download

            weights_file = hf_hub_download(path, ACTOR_FILE, **kwargs)

        state_dict = safetensors.torch.load_file(weights_file)
        if len(state_dict) != 1:
            raise ValueError(
                f"An actor file holds one embedding under its token, got keys {sorted(state_dict)} in {weights_file!r}."
            )
        stored_token, embedding = next(iter(state_dict.items()))
        if name is None:
            name = stored_token.strip("<>") if stored_token != "emb_params" else os.path.basename(os.path.dirname(weights_file))
        if not re.fullmatch(r"[\w\-.]+", name):
            raise ValueError(f"Actor names may hold letters, digits, '_', '-' and '.', got {name!r}.")
        if name in self._actors:
            raise ValueError(f"An actor named {name!r} is already loaded; known actors: {self.actors}.")
        embedding = embedding.reshape(-1, embedding.shape[-1])
        self.load_textual_inversion({f"<{name}>": embedding}, token=f"<{name}>")
        self._actors[name] = embedding.detach().cpu().clone()
        return name

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict, adapter_name: str | None = None, **kwargs):
        """diffusers' `load_lora_weights`, from safetensors only (no fallback to pickled `.bin` files)."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("MPDS loads LoRA weights from safetensors only; leave `use_safetensors` unset or True.")
        kwargs["use_safetensors"] = True
        super().load_lora_weights(pretrained_model_name_or_path_or_dict, adapter_name=adapter_name, **kwargs)

    def load_textual_inversion(self, pretrained_model_name_or_path, token=None, tokenizer=None, text_encoder=None, **kwargs):
        """diffusers' `load_textual_inversion`, from safetensors only (no fallback to pickled `.bin` files)."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("MPDS loads embeddings from safetensors only; leave `use_safetensors` unset or True.")
        kwargs["use_safetensors"] = True
        super().load_textual_inversion(pretrained_model_name_or_path, token, tokenizer, text_encoder, **kwargs)

    def _actor_token(self, actor: str) -> str:
        name = actor[1:-1] if actor.startswith("<") and actor.endswith(">") else actor
        if name not in self._actors:
            raise ValueError(f"Unknown actor {actor!r}; known actors: {self.actors or 'none (use pipe.load_actor)'}.")
        return f"<{name}>"

    # ------------------------------------------------------------------------------------------------------------
    # Helpers of __call__
    # ------------------------------------------------------------------------------------------------------------

    def check_inputs(
        self,
        prompt,
        negative_prompt,
        caption,
        actor,
        height,
        width,
        guidance_scale,
        actor_guidance_scale,
        caption_guidance_scale,
        controlnet_conditioning_scale,
        control_image,
        control_guidance_start,
        control_guidance_end,
        localized_attention_steps,
        actor_box,
        num_images_per_prompt,
        output_type,
        callback_on_step_end_tensor_inputs,
    ):
        if not isinstance(prompt, str) and not (isinstance(prompt, list) and all(isinstance(p, str) for p in prompt)):
            raise ValueError(f"`prompt` must be a string or a list of strings, got {type(prompt).__name__}.")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if isinstance(negative_prompt, list) and len(negative_prompt) != len(prompts):
            raise ValueError(
                f"`negative_prompt` has {len(negative_prompt)} entries but `prompt` has {len(prompts)}; give one each."
            )
        if height % 8 != 0 or width % 8 != 0:
            raise ValueError(f"`height` and `width` must be multiples of 8, got height={height} and width={width}.")
        scales = {
            "guidance_scale": guidance_scale,
            "actor_guidance_scale": actor_guidance_scale,
            "caption_guidance_scale": caption_guidance_scale,
            "controlnet_conditioning_scale": controlnet_conditioning_scale,
        }
        for scale_name, value in scales.items():
            if value < 0:
                raise ValueError(f"`{scale_name}` must be >= 0, got {value}.")
        caption_requested = control_image is not None or (caption is not None and not _as_caption(caption).is_empty)
        if caption_requested and self.controlnet is None:
            raise ValueError(
                "A caption branch was requested (`caption` or `control_image`) but this pipeline has no ControlNet; "
                "load one, e.g. `MPDSPosterPipeline.from_pretrained(..., controlnet=ControlNetModel.from_pretrained("
                "'lllyasviel/sd-controlnet-canny'))`, or leave `caption` and `control_image` unset."
            )
        if actor is None and any(ACTOR_FIELD in p for p in prompts):
            raise ValueError(
                f"The prompt holds {ACTOR_FIELD} but no `actor` was given; pass `actor=` (one of {self.actors}) "
                f"or remove {ACTOR_FIELD} from the prompt."
            )
        if actor is not None:
            self._actor_token(actor)
        if control_image is not None:
            control_size = _image_size(control_image)
            if control_size != (width, height):
                raise ValueError(
                    f"`control_image` is {control_size[0]}x{control_size[1]} (width x height) but the poster is "
                    f"{width}x{height}; give a control image of the poster's size."
                )
        if not 0.0 <= control_guidance_start < control_guidance_end <= 1.0:
            raise ValueError(
                "`control_guidance_start` and `control_guidance_end` must satisfy 0 <= start < end <= 1, got "
                f"start={control_guidance_start} and end={control_guidance_end}."
            )
        if not 0.0 <= localized_attention_steps <= 1.0:
            raise ValueError(f"`localized_attention_steps` is a fraction in [0, 1], got {localized_attention_steps}.")
        left, top, right, bottom = actor_box
        if not (0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0):
            raise ValueError(
                f"`actor_box` is (left, top, right, bottom) as fractions with left < right and top < bottom, got {actor_box}."
            )
        if num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` must be >= 1, got {num_images_per_prompt}.")
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"`output_type` must be one of 'pil', 'np', 'pt', 'latent', got {output_type!r}.")
        unknown = [k for k in callback_on_step_end_tensor_inputs or [] if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` may name {self._callback_tensor_inputs}, got {unknown}."
            )

    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        texts = self.maybe_convert_prompt(texts, self.tokenizer)  # multi-vector actor tokens
        tokens = self.tokenizer(
            texts, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt"
        )
        untruncated = self.tokenizer(texts, padding="longest", return_tensors="pt").input_ids
        if untruncated.shape[-1] > tokens.input_ids.shape[-1]:
            logger.warning(f"A prompt is longer than {self.tokenizer.model_max_length} tokens and was truncated: {texts}")
        return tokens.input_ids

    @torch.no_grad()
    def encode_prompt(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids `(len(texts), 77)` and text embeddings `(len(texts), 77, width)` of a list of prompts."""
        token_ids = self._tokenize(texts)
        embeddings = self.text_encoder(token_ids.to(device))[0]
        return token_ids, embeddings.to(dtype=self.unet.dtype)

    def prepare_latents(self, batch_size, height, width, dtype, device, generator, latents=None):
        shape = (
            batch_size,
            self.unet.config.in_channels,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"Got {len(generator)} generators for a batch of {batch_size} images; give one each.")
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
        else:
            latents = latents.to(device=device, dtype=dtype)
        return latents * self.scheduler.init_noise_sigma

    def prepare_extra_step_kwargs(self, generator, eta):
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        extra_step_kwargs = {}
        if "eta" in accepted:
            extra_step_kwargs["eta"] = eta
        if "generator" in accepted:
            extra_step_kwargs["generator"] = generator
        return extra_step_kwargs

    def run_safety_checker(self, image, device, dtype):
        if self.safety_checker is None:
            return image, None
        features = self.feature_extractor(
            self.image_processor.postprocess(image, output_type="pil"), return_tensors="pt"
        ).to(device)
        return self.safety_checker(images=image, clip_input=features.pixel_values.to(dtype))

    def _localized_tokens(self, actor_token, actor_box, caption, rendered, height, width):
        """(token id pattern, latent-resolution region) pairs for localized attention."""
        latent_height, latent_width = height // self.vae_scale_factor, width // self.vae_scale_factor

        def pattern(text):
            return self.tokenizer(self.maybe_convert_prompt(text, self.tokenizer), add_special_tokens=False).input_ids

        pairs = []
        if actor_token is not None:
            pairs.append((pattern(actor_token), box_mask(actor_box, latent_height, latent_width)))
        if rendered is not None and not rendered.is_empty:
            regions = {
                role: box_mask((left / width, top / height, right / width, bottom / height), latent_height, latent_width)
                for role, (left, top, right, bottom) in rendered.text_boxes.items()
            }
            all_text = torch.stack(list(regions.values())).amax(dim=0)
            words = {word: all_text for word in CAPTION_KEYWORDS}
            for role, text in caption.parts.items():
                for word in text.lower().split():
                    words.setdefault(word, regions[role])
            pairs.extend((pattern(word), region) for word, region in words.items())
        return pairs

    # ------------------------------------------------------------------------------------------------------------
    # Generation
    # ------------------------------------------------------------------------------------------------------------

    @property
    def interrupt(self):
        return self._interrupt

    @property
    def num_timesteps(self):
        return self._num_timesteps

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        prompt: str | list[str],
        caption: PosterCaption | str | None = None,
        actor: str | None = None,
        negative_prompt: str | list[str] | None = None,
        guidance_scale: float = 7.5,
        actor_guidance_scale: float | None = None,
        caption_guidance_scale: float | None = None,
        controlnet_conditioning_scale: float = 1.0,
        control_image: PipelineImageInput | None = None,
        control_guidance_start: float = 0.0,
        control_guidance_end: float = 1.0,
        actor_placeholder: str = "a person",
        localized_attention_steps: float = 0.3,
        actor_box: tuple[float, float, float, float] = (0.2, 0.05, 0.8, 0.6),
        font: str | os.PathLike | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        num_images_per_prompt: int = 1,
        output_type: str = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[Any, int, int, dict], dict] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> MPDSPosterPipelineOutput | tuple:
        r"""Generate posters.

        Args:
            prompt: the text condition; `{actor}` marks where the actor's token goes.
            caption: a `PosterCaption` or a title string, drawn by `render_caption` into the ControlNet's input.
                None or empty turns the caption branch off.
            actor: a loaded actor's name or token (`pipe.actors`). Without `{actor}` in the prompt,
                ", starring <token>" is appended.
            negative_prompt: the unconditional branch's text (default empty).
            guidance_scale: s1, the weight of the prompt over the negative prompt.
            actor_guidance_scale: s2, the weight of the actor over the prompt without it (default: `guidance_scale`).
            caption_guidance_scale: s3, the weight of the caption over the prompt with the actor (default:
                `guidance_scale`). With s1 = s2 = s3 the formula is classifier-free guidance between the negative
                prompt and the full condition, and only those two branches are computed.
            controlnet_conditioning_scale: multiplier of the ControlNet's residuals.
            control_image: an edge image to use instead of the rendered caption (the poster's size).
            control_guidance_start, control_guidance_end: fractions of the steps where the ControlNet is applied.
            actor_placeholder: what replaces `{actor}` in the branch without the actor.
            localized_attention_steps: the fraction of the first steps in which the actor token's and caption
                words' cross-attention is confined to their regions (0 turns it off).
            actor_box: the actor's region as (left, top, right, bottom) fractions of the poster.
            font: a font file for the caption (default: Pillow's built-in scalable font).
            height, width: the poster's size in pixels, multiples of 8 (default: the UNet's sample size).
            num_inference_steps: denoising steps.
            eta: DDIM's eta (ignored by other schedulers).
            generator: torch generator(s) for reproducible noise.
            latents: initial noise of shape `(batch, channels, height / 8, width / 8)`.
            num_images_per_prompt: posters per prompt.
            output_type: "pil", "np", "pt" or "latent".
            return_dict: return a `MPDSPosterPipelineOutput` rather than a tuple.
            cross_attention_kwargs: passed to the UNet's attention processors (e.g. `{"scale": 0.5}` for LoRA).
            callback_on_step_end: called after each step as `callback(pipe, step, timestep, tensors)`; may return
                a dict replacing `latents`.
            callback_on_step_end_tensor_inputs: the tensors given to the callback (`["latents"]`).

        Returns:
            `MPDSPosterPipelineOutput` (images, control_images, nsfw_content_detected), or the tuple of the three.

        Raises:
            ValueError: for the invalid inputs listed in `check_inputs`.

        Examples:
        """
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        actor_guidance_scale = guidance_scale if actor_guidance_scale is None else actor_guidance_scale
        caption_guidance_scale = guidance_scale if caption_guidance_scale is None else caption_guidance_scale
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        # 1. Check inputs
        self.check_inputs(
            prompt,
            negative_prompt,
            caption,
            actor,
            height,
            width,
            guidance_scale,
            actor_guidance_scale,
            caption_guidance_scale,
            controlnet_conditioning_scale,
            control_image,
            control_guidance_start,
            control_guidance_end,
            localized_attention_steps,
            actor_box,
            num_images_per_prompt,
            output_type,
            callback_on_step_end_tensor_inputs,
        )
        self._interrupt = False
        device = self._execution_device
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        batch_size = len(prompts) * num_images_per_prompt

        # 2. Build the four branches' prompts: eps(0), eps(p), eps(p,a), eps(p,a,c)
        negative_prompts = negative_prompt if isinstance(negative_prompt, list) else [negative_prompt or ""] * len(prompts)
        actor_token = self._actor_token(actor) if actor is not None else None
        prompts_without_actor = [p.replace(ACTOR_FIELD, actor_placeholder) for p in prompts]
        if actor_token is None:
            prompts_with_actor = prompts_without_actor
        else:
            prompts_with_actor = [
                p.replace(ACTOR_FIELD, actor_token) if ACTOR_FIELD in p else f"{p}, starring {actor_token}"
                for p in prompts
            ]

        # 3. Render the caption into the ControlNet's input (the caption branch is on when there is one)
        caption = _as_caption(caption)
        rendered = None if caption.is_empty else render_caption(caption, width, height, font=font)
        if control_image is None and rendered is not None:
            control_image = rendered.control_image
        caption_on = control_image is not None
        control_images_used = None
        if caption_on:
            control_tensor = self.control_image_processor.preprocess(control_image, height=height, width=width)
            control_tensor = control_tensor.to(device=device, dtype=self.controlnet.dtype)
            control_images_used = self.control_image_processor.postprocess(control_tensor, output_type="pil") * batch_size
            control_tensor = control_tensor.repeat(batch_size // control_tensor.shape[0], 1, 1, 1)

        # 4. Plan the guidance: which branches are computed, with which weights
        branches = [
            _Branch(tuple(negative_prompts), uses_controlnet=False),
            _Branch(tuple(prompts_without_actor), uses_controlnet=False),
            _Branch(tuple(prompts_with_actor), uses_controlnet=False),
            _Branch(tuple(prompts_with_actor), uses_controlnet=caption_on),
        ]
        weights = [
            1.0 - guidance_scale,
            guidance_scale - actor_guidance_scale,
            actor_guidance_scale - caption_guidance_scale,
            caption_guidance_scale,
        ]
        plan_with_control = _guidance_plan(branches, weights)
        # Outside [control_guidance_start, control_guidance_end] the caption branch has no residuals: it is eps(p,a).
        plan_without_control = _guidance_plan([_Branch(b.texts, False) for b in branches], weights)

        # 5. Encode each distinct branch's prompts once
        token_ids, embeddings = {}, {}
        for branch, _ in plan_with_control + plan_without_control:
            if branch.texts not in embeddings:
                ids, embeds = self.encode_prompt(list(branch.texts), device)
                token_ids[branch.texts] = ids.repeat_interleave(num_images_per_prompt, dim=0)
                embeddings[branch.texts] = embeds.repeat_interleave(num_images_per_prompt, dim=0)

        prompt_dtype = next(iter(embeddings.values())).dtype

        # 6. Prepare localized attention: token regions of each branch's prompts
        localized_tokens = []
        if localized_attention_steps > 0:
            localized_tokens = self._localized_tokens(actor_token, actor_box, caption, rendered, height, width)
        region_masks = {texts: build_region_masks(ids, localized_tokens) for texts, ids in token_ids.items()}
        if any(m is not None for m in region_masks.values()):
            replaced = sorted(
                {type(p).__name__ for p in self.unet.attn_processors.values() if not isinstance(p, LocalizedAttnProcessor)}
            )
            if replaced:
                raise ValueError(
                    f"Localized attention needs mpds' LocalizedAttnProcessor in the UNet, but it has {replaced} "
                    "(e.g. after set_attn_processor or fuse_qkv_projections); pass `localized_attention_steps=0`, "
                    "or call `pipe.unet.set_attn_processor(LocalizedAttnProcessor())`."
                )

        # 7. Prepare timesteps and latents
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        latents = self.prepare_latents(batch_size, height, width, prompt_dtype, device, generator, latents)
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        num_localized_steps = round(localized_attention_steps * len(timesteps))
        unet_shares_trunk = supports_shared_trunk(self.unet, cross_attention_kwargs)

        # 8. Denoising loop
        num_warmup_steps = len(timesteps) - num_inference_steps * self.scheduler.order
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue

                # 8.1 Choose this step's branches: the ControlNet is on inside its window only
                control_on = caption_on and (
                    i / len(timesteps) >= control_guidance_start and (i + 1) / len(timesteps) <= control_guidance_end
                )
                plan = plan_with_control if control_on else plan_without_control
                num_branches = len(plan)

                # 8.2 One batch for all branches. Branches with the same prompts (eps(p,a) and eps(p,a,c)) differ only
                # by the ControlNet's residuals, which enter after the UNet's down and middle blocks: those blocks run
                # once for both (see shared_trunk.py) when the UNet allows it.
                trunk_texts = list(dict.fromkeys(branch.texts for branch, _ in plan))
                share_trunk = unet_shares_trunk and len(trunk_texts) < num_branches
                if not share_trunk:
                    trunk_texts = [branch.texts for branch, _ in plan]
                model_input = self.scheduler.scale_model_input(latents, t)
                trunk_input = torch.cat([model_input] * len(trunk_texts))
                trunk_embeds = torch.cat([embeddings[texts] for texts in trunk_texts])

                # 8.3 The ControlNet runs on the caption branch only; the other branches get zero residuals
                down_residuals, mid_residual = None, None
                if control_on:
                    control_row = next(k for k, (branch, _) in enumerate(plan) if branch.uses_controlnet)
                    down_samples, mid_sample = self.controlnet(
                        model_input,
                        t,
                        encoder_hidden_states=embeddings[plan[control_row][0].texts],
                        controlnet_cond=control_tensor,
                        conditioning_scale=controlnet_conditioning_scale,
                        return_dict=False,
                    )
                    down_residuals = [_place_rows(sample, control_row, num_branches) for sample in down_samples]
                    mid_residual = _place_rows(mid_sample, control_row, num_branches)

                # 8.4 Localized attention during the first steps
                attention_kwargs = dict(cross_attention_kwargs or {})
                trunk_attention_kwargs = dict(attention_kwargs)
                if i < num_localized_steps and any(region_masks[branch.texts] is not None for branch, _ in plan):
                    attention_kwargs["localized_attention"] = _localized_attention(
                        region_masks, [branch.texts for branch, _ in plan], batch_size, device
                    )
                    if share_trunk:  # otherwise the trunk's rows are the branches' rows: the plain UNet call
                        trunk_attention_kwargs["localized_attention"] = _localized_attention(
                            region_masks, trunk_texts, batch_size, device
                        )

                # 8.5 Predict the noise of every branch in one batched UNet pass
                if share_trunk:
                    source_rows = [
                        trunk_texts.index(branch.texts) * batch_size + row for branch, _ in plan for row in range(batch_size)
                    ]
                    noise_pred = unet_with_shared_trunk(
                        self.unet,
                        trunk_input,
                        t,
                        trunk_embeds,
                        source_rows,
                        down_residuals=down_residuals,
                        mid_residual=mid_residual,
                        trunk_attention_kwargs=trunk_attention_kwargs or None,
                        attention_kwargs=attention_kwargs or None,
                    )
                else:
                    noise_pred = self.unet(
                        trunk_input,
                        t,
                        encoder_hidden_states=trunk_embeds,
                        cross_attention_kwargs=attention_kwargs or None,
                        down_block_additional_residuals=down_residuals,
                        mid_block_additional_residual=mid_residual,
                        return_dict=False,
                    )[0]

                # 8.6 Multi-condition guidance: the weighted sum of the branches' predictions
                noise_pred = sum(weight * eps for (_, weight), eps in zip(plan, noise_pred.chunk(num_branches)))

                # 8.7 Step the scheduler
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

                if callback_on_step_end is not None:
                    tensors = {"latents": latents}
                    callback_kwargs = {name: tensors[name] for name in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.pop("latents", latents)

                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()

        # 9. Decode
        if output_type == "latent":
            image, has_nsfw_concept = latents, None
        else:
            image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False, generator=generator)[0]
            image, has_nsfw_concept = self.run_safety_checker(image, device, prompt_dtype)
            do_denormalize = [True] * image.shape[0] if has_nsfw_concept is None else [not n for n in has_nsfw_concept]
            image = self.image_processor.postprocess(image, output_type=output_type, do_denormalize=do_denormalize)

        self.maybe_free_model_hooks()
        if not return_dict:
            return image, control_images_used, has_nsfw_concept
        return MPDSPosterPipelineOutput(
            images=image, control_images=control_images_used, nsfw_content_detected=has_nsfw_concept
        )

    # ------------------------------------------------------------------------------------------------------------
    # Saving and loading the bundle
    # ------------------------------------------------------------------------------------------------------------

    def _lora_adapters(self) -> dict[str, dict[str, Any]]:
        """Each LoRA adapter's UNet and text-encoder weights and configs, as PEFT keeps them."""
        from peft.utils import get_peft_model_state_dict

        adapters: dict[str, dict[str, Any]] = {}
        for component_name in ("unet", "text_encoder"):
            component = getattr(self, component_name)
            for adapter_name, config in getattr(component, "peft_config", {}).items():
                entry = adapters.setdefault(adapter_name, {})
                entry[f"{component_name}_lora_layers"] = get_peft_model_state_dict(component, adapter_name=adapter_name)
                entry[f"{component_name}_lora_adapter_metadata"] = config.to_dict()
        return adapters

    @contextlib.contextmanager
    def _actors_detached(self):
        """Remove the actors' tokens from the tokenizer and text encoder for a while (they are saved apart)."""
        tokens = [token for name in self._actors for token in self._actor_vector_tokens(name)]
        if tokens:
            self.unload_textual_inversion(tokens)
            # unload_textual_inversion shrinks the embedding matrix but not the config that is saved with it.
            self.text_encoder.config.vocab_size = self.text_encoder.get_input_embeddings().num_embeddings
        try:
            yield
        finally:
            for name, embedding in self._actors.items():
                self.load_textual_inversion({f"<{name}>": embedding}, token=f"<{name}>")

    def _actor_vector_tokens(self, name: str) -> list[str]:
        count = self._actors[name].shape[0]
        return [f"<{name}>"] + [f"<{name}>_{k}" for k in range(1, count)]

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        base_model: str | None = None,
        datasets: list[str] | None = None,
        license: str = "creativeml-openrail-m",
        repo_id: str | None = None,
        **kwargs,
    ):
        """Save the whole bundle to one folder, loadable by `MPDSPosterPipeline.from_pretrained`.

        Layout: one folder per component (`unet/`, `controlnet/`, ...; base weights only), `lora/<adapter>/` per
        LoRA adapter (unfused, with `lora/adapters.json` naming the active ones), `actors/<name>/learned_embeds.safetensors`
        per actor, and a model card `README.md`. Weights are written as safetensors only.

        Args:
            save_directory: the folder.
            base_model, datasets, license: model-card metadata (base model defaults to where the pipeline was
                loaded from when that is a Hub id, else Stable Diffusion 1.5).
            repo_id: the Hub repo the card's usage examples load from (default: `save_directory`); with
                `push_to_hub=True`, the repo to upload to (default: the folder's name).
            push_to_hub: upload the folder afterwards (see `push_to_hub`).

        Raises:
            ValueError: with `safe_serialization=False`, or with LoRA weights fused into the UNet.
        """
        if not safe_serialization:
            raise ValueError("MPDS bundles are written as safetensors only; leave `safe_serialization=True`.")
        if push_to_hub:
            repo_id = repo_id or os.path.basename(os.fspath(save_directory))
            card = {"base_model": base_model, "datasets": datasets, "license": license}
            return self.push_to_hub(repo_id, variant=variant, max_shard_size=max_shard_size, **card, **kwargs)
        adapters = self._lora_adapters()
        with _without_peft_layers(self.unet, self.text_encoder), self._actors_detached():
            super().save_pretrained(
                save_directory, safe_serialization=True, variant=variant, max_shard_size=max_shard_size
            )

        model_index_file = os.path.join(save_directory, self.config_name)
        with open(model_index_file) as f:
            model_index = json.load(f)
        model_index["_class_name"] = [LOADER_MODULE, type(self).__name__]
        with open(model_index_file, "w") as f:
            json.dump(model_index, f, indent=2, sort_keys=True)
        with open(os.path.join(save_directory, f"{LOADER_MODULE}.py"), "w") as f:
            f.write(LOADER_MODULE_TEXT)

        lora_directory = os.path.join(save_directory, LORA_FOLDER)
        for adapter_name, layers in adapters.items():
            self.save_lora_weights(os.path.join(lora_directory, adapter_name), safe_serialization=True, **layers)
        if adapters:
            active = self.get_active_adapters()
            with open(os.path.join(lora_directory, LORA_INDEX), "w") as f:
                json.dump({"adapters": sorted(adapters), "active": active}, f, indent=2)

        for name, embedding in self._actors.items():
            actor_directory = os.path.join(save_directory, ACTORS_FOLDER, name)
            os.makedirs(actor_directory, exist_ok=True)
            safetensors.torch.save_file({f"<{name}>": embedding.contiguous()}, os.path.join(actor_directory, ACTOR_FILE))

        card = self.model_card(
            base_model=base_model, datasets=datasets, license=license, repo_id=repo_id or os.fspath(save_directory)
        )
        card.save(os.path.join(save_directory, "README.md"))

    def model_card(
        self,
        base_model: str | None = None,
        datasets: list[str] | None = None,
        license: str = "creativeml-openrail-m",
        repo_id: str = "REPO_ID",
    ):
        """The bundle's `huggingface_hub.ModelCard`, from the template in `mpds.model_cards`; its usage examples
        load `repo_id`."""
        from importlib.resources import files

        from huggingface_hub import ModelCard, ModelCardData

        if base_model is None:
            loaded_from = self.config.get("_name_or_path") or ""
            base_model = loaded_from if re.fullmatch(r"[\w\-.]+/[\w\-.]+", loaded_from) else DEFAULT_BASE_MODEL
        card_data = ModelCardData(
            license=license,
            base_model=base_model,
            datasets=list(datasets) if datasets else None,
            library_name="diffusers",
            pipeline_tag="text-to-image",
            tags=["mpds", "movie-poster", "text-to-image", "controlnet", "lora", "textual-inversion"],
        )
        template = files("mpds.model_cards").joinpath("mpds_poster_pipeline.md")
        return ModelCard.from_template(
            card_data,
            template_str=template.read_text(encoding="utf-8"),
            base_model=base_model,
            has_controlnet=self.controlnet is not None,
            adapters=sorted({name for c in (self.unet, self.text_encoder) for name in getattr(c, "peft_config", {})}),
            actors=self.actors,
            repo_id=repo_id,
        )

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str = "Upload MPDSPosterPipeline",
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        **save_kwargs,
    ) -> str:
        """Save the bundle (with its model card) to a temporary folder and upload it to the Hub repo `repo_id`.

        Returns the URL of the commit.
        """
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, repo_id=repo_id, **save_kwargs)
            return api.upload_folder(
                repo_id=repo_id, folder_path=folder, commit_message=commit_message, create_pr=create_pr
            )

    @classmethod
    def _dict_from_json_file(cls, json_file: str | os.PathLike) -> dict:
        # Read our own model_index.json's [module, class] name as the class itself, so diffusers does not look for
        # custom code: this class is the code.
        config = super()._dict_from_json_file(json_file)
        if config.get("_class_name") == [LOADER_MODULE, cls.__name__]:
            config["_class_name"] = cls.__name__
        return config

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load a bundle written by `save_pretrained` (folder or Hub repo), or a Stable Diffusion repo.

        Besides the components, it loads every LoRA adapter of `lora/` (unfused, as adapters whose scale can be
        changed with `set_adapters`) and every actor of `actors/`. Weights load from safetensors only.

        Example:
            >>> pipe = MPDSPosterPipeline.from_pretrained("my-user/mpds-poster")  # doctest: +SKIP
        """
        if kwargs.get("use_safetensors") is False:
            raise ValueError("MPDS loads weights from safetensors only; leave `use_safetensors` unset or True.")
        kwargs["use_safetensors"] = True
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)

        folder = os.fspath(pretrained_model_name_or_path)
        if not os.path.isdir(folder):
            from huggingface_hub import snapshot_download

            hub_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
            folder = snapshot_download(
                folder, allow_patterns=[f"{LORA_FOLDER}/*", f"{ACTORS_FOLDER}/*/{ACTOR_FILE}"], **hub_kwargs
            )
        lora_index = os.path.join(folder, LORA_FOLDER, LORA_INDEX)
        if os.path.isfile(lora_index):
            with open(lora_index) as f:
                index = json.load(f)
            for adapter_name in index["adapters"]:
                pipe.load_lora_weights(os.path.join(folder, LORA_FOLDER, adapter_name), adapter_name=adapter_name)
            pipe.set_adapters(index["active"])
        actors_folder = os.path.join(folder, ACTORS_FOLDER)
        if os.path.isdir(actors_folder):
            for name in sorted(os.listdir(actors_folder)):
                pipe.load_actor(os.path.join(actors_folder, name), name=name)
        return pipe


def _as_caption(caption: PosterCaption | str | None) -> PosterCaption:
    if caption is None:
        return PosterCaption("")
    if isinstance(caption, str):
        return PosterCaption(caption)
    if isinstance(caption, PosterCaption):
        return caption
    raise ValueError(f"`caption` must be a PosterCaption, a string or None, got {type(caption).__name__}.")


def _image_size(image) -> tuple[int, int]:
    """(width, height) of a PIL image, a numpy array (H, W, C) or a tensor (..., C, H, W); lists by first item."""
    if isinstance(image, list):
        image = image[0]
    if isinstance(image, PIL.Image.Image):
        return image.size
    if isinstance(image, np.ndarray):
        return (image.shape[-2], image.shape[-3]) if image.ndim >= 3 else (image.shape[1], image.shape[0])
    if isinstance(image, torch.Tensor):
        return image.shape[-1], image.shape[-2]
    raise ValueError(f"`control_image` must be a PIL image, numpy array or tensor, got {type(image).__name__}.")


def _place_rows(residual: torch.Tensor, branch: int, num_branches: int) -> torch.Tensor:
    """A residual for the whole batch: `residual` in the rows of `branch`, zeros in the other branches' rows."""
    parts = [residual if k == branch else torch.zeros_like(residual) for k in range(num_branches)]
    return torch.cat(parts)


def _localized_attention(region_masks: dict, texts_of_rows: list, batch_size: int, device) -> LocalizedAttention:
    """The region masks of a batch whose branches have the prompts `texts_of_rows`; no mask (all ones) where a
    branch's prompts have no localized token."""
    reference = next(m for m in region_masks.values() if m is not None)
    no_mask = torch.ones((batch_size,) + tuple(reference.shape[1:]))
    masks = [region_masks[texts] if region_masks[texts] is not None else no_mask for texts in texts_of_rows]
    return LocalizedAttention(torch.cat(masks).to(device))
