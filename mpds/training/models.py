"""The base model, and the part of it each task trains.

- `lora`: a PEFT LoRA adapter on the UNet's attention projections;
- `actor`: one new token embedding per actor (`ActorTokenEmbedding`: the vocabulary's rows stay frozen tensors);
- `controlnet`: the caption ControlNet, from a given one, the base bundle's, or initialised from the UNet.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Optional

import safetensors.torch
import torch

from .errors import TrainingError

REQUIRED_COMPONENTS = ("vae", "text_encoder", "tokenizer", "unet", "scheduler")
LORA_ADAPTER = "mpds_poster"
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
ACTOR_WEIGHTS = "learned_embeds.safetensors"


class ActorTokenEmbedding(torch.nn.Module):
    """A token embedding whose first `base.num_embeddings` rows are frozen and whose new rows are trained.

    Token ids at or past the base vocabulary read `new_rows`; the others read the frozen base table. Only
    `new_rows` is a parameter with a gradient, so nothing else can change (nor take optimizer memory).
    """

    def __init__(self, base: torch.nn.Embedding, new_rows: torch.Tensor):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        self.new_rows = torch.nn.Parameter(new_rows.clone().float())

    @property
    def weight(self) -> torch.Tensor:  # read by transformers for shapes and dtypes
        return self.base.weight

    @property
    def num_embeddings(self) -> int:
        return self.base.num_embeddings + self.new_rows.shape[0]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        vocabulary = self.base.num_embeddings
        is_new = input_ids >= vocabulary
        base = self.base(input_ids.clamp(max=vocabulary - 1))
        new = self.new_rows[(input_ids - vocabulary).clamp(min=0)].to(base.dtype)
        return torch.where(is_new.unsqueeze(-1), new, base)


@dataclass
class Models:
    """The pipeline components of a run; `trainable` is the module accelerate prepares (DDP-wraps) and checkpoints."""

    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    unet: torch.nn.Module
    noise_scheduler: object
    controlnet: Optional[torch.nn.Module] = None
    trainable: Optional[torch.nn.Module] = None
    actor_tokens: dict[str, str] = field(default_factory=dict)  # actor name -> token

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def check_base_model(base_model: str, revision: Optional[str] = None) -> dict:
    """The base model's `model_index.json`, after checking it has the Stable Diffusion components training needs.

    Raises:
        TrainingError: when it cannot be read or lacks one of `REQUIRED_COMPONENTS`.
    """
    from mpds.pipeline import MPDSPosterPipeline

    try:
        index = MPDSPosterPipeline.load_config(base_model, revision=revision)
    except (OSError, ValueError) as error:
        raise TrainingError(
            f"Cannot read {base_model!r} as a base model (a Stable Diffusion 1.x folder or Hub repo with a "
            f"model_index.json): {error}"
        ) from error
    missing = [name for name in REQUIRED_COMPONENTS if not (index.get(name) and index[name][0] is not None)]
    if os.path.isdir(base_model):
        missing += [name for name in REQUIRED_COMPONENTS
                    if name not in missing and not os.path.isdir(os.path.join(base_model, name))]
    if missing:
        raise TrainingError(
            f"The base model {base_model!r} lacks the component(s) {', '.join(missing)}; training needs "
            f"{', '.join(REQUIRED_COMPONENTS)} (a Stable Diffusion 1.x model or an mpds bundle)."
        )
    return index


def load_base_pipeline(base_model: str, revision: Optional[str] = None, **kwargs):
    """`MPDSPosterPipeline.from_pretrained(base_model)` after `check_base_model`, without the safety checker."""
    from mpds.pipeline import MPDSPosterPipeline

    check_base_model(base_model, revision)
    kwargs.setdefault("safety_checker", None)
    kwargs.setdefault("feature_extractor", None)
    pipe = MPDSPosterPipeline.from_pretrained(base_model, revision=revision, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def actor_token(name: str) -> tuple[str, str]:
    """(actor name as the pipeline knows it, its token): `"Ava Stone"` -> `("ava_stone", "<ava_stone>")`."""
    slug = re.sub(r"[^\w\-.]+", "_", name.strip().lower()).strip("_") or "actor"
    return slug, f"<{slug}>"


def load_models(args, actor_names: Optional[list[str]] = None) -> Models:
    """Load the base model and make the task's part trainable (everything else frozen, in eval mode)."""
    from diffusers import ControlNetModel, DDPMScheduler

    pipe = load_base_pipeline(args.base_model, args.revision)
    models = Models(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
        noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config), controlnet=pipe.controlnet,
    )
    for module in (models.vae, models.text_encoder, models.unet, models.controlnet):
        if module is not None:
            module.requires_grad_(False)
            module.eval()

    if args.task == "lora":
        from peft import LoraConfig

        config = LoraConfig(r=args.rank, lora_alpha=args.lora_alpha, init_lora_weights="gaussian",
                            target_modules=LORA_TARGETS)
        if LORA_ADAPTER in getattr(models.unet, "peft_config", {}):
            raise TrainingError(f"The base model already has a LoRA adapter named {LORA_ADAPTER!r}; start from its "
                                "base model, or fuse it first.")
        models.unet.add_adapter(config, adapter_name=LORA_ADAPTER)
        active = list(getattr(models.unet, "active_adapters", lambda: [LORA_ADAPTER])())
        models.unet.set_adapters(sorted(set(active) | {LORA_ADAPTER}))
        for name, parameter in models.unet.named_parameters():
            parameter.requires_grad_(f".{LORA_ADAPTER}." in name and "lora_" in name)
        for parameter in models.unet.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.float()
        models.unet.train()
        models.trainable = models.unet

    elif args.task == "actor":
        models.actor_tokens = add_actor_tokens(models, actor_names or [], args.initializer_token)
        models.text_encoder.train()
        models.trainable = models.text_encoder

    elif args.task == "controlnet":
        if args.controlnet:
            models.controlnet = ControlNetModel.from_pretrained(args.controlnet, use_safetensors=True)
        elif models.controlnet is None:
            # The conditioning embedding must shrink the control image by the VAE's factor: one stride-2 stage each.
            stages = int(math.log2(models.vae_scale_factor)) + 1
            channels = (16, 32, 96, 256)[:stages] if stages <= 4 else (16, 32, 96, 256) + (256,) * (stages - 4)
            models.controlnet = controlnet_from_unet(models.unet, channels)
        models.controlnet.requires_grad_(True)
        models.controlnet.train()
        models.trainable = models.controlnet
    return models


def controlnet_from_unet(unet, conditioning_channels) -> torch.nn.Module:
    """A ControlNet whose encoder starts as a copy of `unet`'s (its base weights: a LoRA on it is left out)."""
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=conditioning_channels,
                                           load_weights_from_unet=False)
    base_weights = {key.replace(".base_layer.", "."): value for key, value in unet.state_dict().items()
                    if "lora_" not in key}
    for part in ("conv_in", "time_proj", "time_embedding", "class_embedding", "add_embedding", "down_blocks",
                 "mid_block"):
        if getattr(controlnet, part, None) is None:
            continue
        weights = {key[len(part) + 1:]: value for key, value in base_weights.items() if key.startswith(part + ".")}
        getattr(controlnet, part).load_state_dict(weights)
    return controlnet


def add_actor_tokens(models: Models, actor_names: list[str], initializer_token: str) -> dict[str, str]:
    """Add one token per actor to the tokenizer and text encoder, each starting at `initializer_token`'s embedding."""
    tokens = {}
    for name in actor_names:
        slug, token = actor_token(name)
        if token in tokens.values():
            raise TrainingError(f"Two actors map to the token {token}; pick actors with distinct names.")
        tokens[name] = token
    added = models.tokenizer.add_tokens(list(tokens.values()))
    if added != len(tokens):
        raise TrainingError(f"Some actor tokens ({list(tokens.values())}) are already in the tokenizer; the base "
                            "model has actors of the same names.")
    embedding = models.text_encoder.get_input_embeddings()
    initializer_ids = models.tokenizer(initializer_token, add_special_tokens=False).input_ids
    if not initializer_ids:
        raise TrainingError(f"--initializer_token {initializer_token!r} is empty for the tokenizer.")
    start = embedding.weight[initializer_ids].detach().float().mean(dim=0)
    new_rows = start.unsqueeze(0).repeat(len(tokens), 1)
    if embedding.num_embeddings != len(models.tokenizer) - len(tokens):
        # Row ids of the new tokens must follow the table directly.
        raise TrainingError(f"The text encoder has {embedding.num_embeddings} token rows but the tokenizer "
                            f"{len(models.tokenizer) - len(tokens)} tokens; they must match.")
    models.text_encoder.set_input_embeddings(ActorTokenEmbedding(embedding, new_rows))
    return tokens


def trainable_parameters(models: Models) -> list[torch.nn.Parameter]:
    return [parameter for parameter in models.trainable.parameters() if parameter.requires_grad]


def actor_embeddings(models: Models, text_encoder: Optional[torch.nn.Module] = None) -> dict[str, torch.Tensor]:
    """{token: its learned embedding (1, width)}, in the order the tokens were added."""
    embedding = (text_encoder or models.text_encoder).get_input_embeddings()
    return {token: embedding.new_rows[k : k + 1].detach().float().cpu().clone()
            for k, token in enumerate(models.actor_tokens.values())}


def save_trained_weights(task: str, model: torch.nn.Module, models: Models, directory: str) -> None:
    """Write the task's trained weights (and only those) to `directory`, as safetensors."""
    os.makedirs(directory, exist_ok=True)
    if task == "lora":
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(model, adapter_name=LORA_ADAPTER))
        StableDiffusionPipeline.save_lora_weights(
            directory, unet_lora_layers=layers, safe_serialization=True, weight_name=LORA_WEIGHTS,
            unet_lora_adapter_metadata=model.peft_config[LORA_ADAPTER].to_dict(),
        )
    elif task == "actor":
        for (name, token), (_, embedding) in zip(models.actor_tokens.items(), actor_embeddings(models, model).items()):
            slug, _ = actor_token(name)
            actor_directory = os.path.join(directory, "actors", slug)
            os.makedirs(actor_directory, exist_ok=True)
            safetensors.torch.save_file({token: embedding.contiguous()}, os.path.join(actor_directory, ACTOR_WEIGHTS))
    else:
        model.save_pretrained(os.path.join(directory, "controlnet"), safe_serialization=True)


def load_trained_weights(task: str, model: torch.nn.Module, models: Models, directory: str) -> None:
    """Read back what `save_trained_weights` wrote into the (unwrapped) trainable `model`."""
    if task == "lora":
        from peft import set_peft_model_state_dict
        from diffusers.utils import convert_unet_state_dict_to_peft

        state = safetensors.torch.load_file(os.path.join(directory, LORA_WEIGHTS))
        state = {key.removeprefix("unet."): value for key, value in state.items()}
        result = set_peft_model_state_dict(model, convert_unet_state_dict_to_peft(state), adapter_name=LORA_ADAPTER)
        if getattr(result, "unexpected_keys", None):
            raise TrainingError(f"{directory}: unexpected LoRA keys {result.unexpected_keys[:3]} ...")
    elif task == "actor":
        rows = model.get_input_embeddings().new_rows
        with torch.no_grad():
            for k, (name, token) in enumerate(models.actor_tokens.items()):
                slug, _ = actor_token(name)
                stored = safetensors.torch.load_file(os.path.join(directory, "actors", slug, ACTOR_WEIGHTS))
                rows[k].copy_(stored[token].reshape(-1))
    else:
        from diffusers import ControlNetModel

        saved = ControlNetModel.from_pretrained(os.path.join(directory, "controlnet"), use_safetensors=True)
        model.load_state_dict(saved.state_dict())
