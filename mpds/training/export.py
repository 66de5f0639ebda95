"""`--export DIR`: the base model plus what a run trained, as one `MPDSPosterPipeline` bundle with a model card.

The bundle is built from a fresh load of the base model (full precision, untouched by training) and the trained
weights the run wrote to its output folder, so it holds exactly: the base components, the base's own LoRA, actors
and ControlNet if it was a bundle, and the new LoRA (unfused), actors or ControlNet.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Optional

from .errors import TrainingError
from .models import ACTOR_WEIGHTS, LORA_ADAPTER, LORA_WEIGHTS, load_base_pipeline

CARD_TEMPLATE = "mpds_training.md"
# Hyper-parameters shown in the card.
CARD_SETTINGS = (
    "resolution", "train_batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler", "lr_end",
    "lr_warmup_steps", "max_train_steps", "max_train_samples", "rank", "lora_alpha", "mixed_precision", "seed",
    "initializer_token", "caption_layout",
)


def build_bundle(args, weights_dir: str):
    """The exported pipeline: the base model with the trained weights of `weights_dir` loaded into it."""
    from diffusers import ControlNetModel

    kwargs = {}
    if args.task == "controlnet":
        kwargs["controlnet"] = ControlNetModel.from_pretrained(os.path.join(weights_dir, "controlnet"),
                                                               use_safetensors=True)
    elif args.controlnet:
        kwargs["controlnet"] = ControlNetModel.from_pretrained(args.controlnet, use_safetensors=True)
    pipe = load_base_pipeline(args.base_model, args.revision, **kwargs)
    if args.task == "lora":
        previous = list(getattr(pipe.unet, "peft_config", {}))
        pipe.load_lora_weights(weights_dir, weight_name=LORA_WEIGHTS, adapter_name=LORA_ADAPTER)
        pipe.set_adapters(previous + [LORA_ADAPTER])
    elif args.task == "actor":
        actors_dir = os.path.join(weights_dir, "actors")
        for name in sorted(os.listdir(actors_dir)):
            if os.path.isfile(os.path.join(actors_dir, name, ACTOR_WEIGHTS)):
                pipe.load_actor(os.path.join(actors_dir, name), name=name)
    return pipe


def export_bundle(args, weights_dir: str, export_dir: str, summary: dict) -> str:
    """Write the bundle and its training model card to `export_dir`; return the folder.

    `summary` has `steps`, `final_loss`, `num_samples` and `validation_images` (paths of PNG files, copied in).
    """
    pipe = build_bundle(args, weights_dir)
    pipe.save_pretrained(export_dir)
    images = []
    for path in summary.get("validation_images", []):
        target = os.path.join("validation", os.path.basename(path))
        os.makedirs(os.path.join(export_dir, "validation"), exist_ok=True)
        shutil.copyfile(path, os.path.join(export_dir, target))
        images.append(target)
    training_card(args, pipe, dict(summary, validation_images=images)).save(os.path.join(export_dir, "README.md"))
    return export_dir


def _hub_url(name: str, kind: str = "") -> Optional[str]:
    if os.path.isdir(name) or not re.fullmatch(r"[\w\-.]+/[\w\-.]+", name):
        return None
    return f"https://huggingface.co/{kind}{name}"


def training_card(args, pipe, summary: dict):
    """The bundle's `huggingface_hub.ModelCard`, from `mpds.model_cards`' training template."""
    from importlib.resources import files

    from huggingface_hub import ModelCard, ModelCardData

    base_is_repo = _hub_url(args.base_model) is not None
    dataset_is_repo = _hub_url(args.dataset, "datasets/") is not None
    card_data = ModelCardData(
        license="creativeml-openrail-m",
        base_model=args.base_model if base_is_repo else None,
        datasets=[args.dataset] if dataset_is_repo else None,
        library_name="diffusers",
        pipeline_tag="text-to-image",
        tags=["mpds", "movie-poster", "text-to-image", f"mpds-{args.task}",
              {"lora": "lora", "actor": "textual-inversion", "controlnet": "controlnet"}[args.task]],
    )
    hyperparameters = {name: getattr(args, name) for name in CARD_SETTINGS if getattr(args, name, None) is not None}
    if args.task != "lora":
        hyperparameters = {k: v for k, v in hyperparameters.items() if k not in ("rank", "lora_alpha")}
    if args.task != "actor":
        hyperparameters.pop("initializer_token", None)
    if args.lr_scheduler != "polynomial":
        hyperparameters.pop("lr_end", None)
    if args.task != "controlnet":
        hyperparameters.pop("caption_layout", None)
    final_loss = summary.get("final_loss")
    template = files("mpds.model_cards").joinpath(CARD_TEMPLATE).read_text(encoding="utf-8")
    return ModelCard.from_template(
        card_data,
        template_str=template,
        title=f"MPDS poster pipeline ({args.task})",
        task=args.task,
        dataset=args.dataset if dataset_is_repo else os.path.basename(os.path.normpath(args.dataset)),
        dataset_url=_hub_url(args.dataset, "datasets/"),
        base_model=args.base_model if base_is_repo else os.path.basename(os.path.normpath(args.base_model)),
        base_model_url=_hub_url(args.base_model),
        genres=args.genres,
        adapter=LORA_ADAPTER,
        actors=pipe.actors,
        num_samples=summary.get("num_samples", "unknown"),
        steps=summary.get("steps"),
        final_loss=f"{final_loss:.4f}" if isinstance(final_loss, float) else "n/a",
        hyperparameters=hyperparameters,
        validation_images=summary.get("validation_images", []),
        example_prompt=args.validation_prompt or "a movie poster",
        repo_id=args.push_to_hub or args.export,
    )


def push_bundle(export_dir: str, repo_id: str, token: Optional[str] = None) -> str:
    """Upload the exported folder to the Hub model repo `repo_id` (created if needed); return the commit URL.

    Raises:
        TrainingError: when the Hub cannot be reached or refuses the upload (offline mode, no or a read-only
            token, a repo of someone else); the message says how to publish the bundle, which stays, later.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        repo_id = api.create_repo(repo_id, exist_ok=True).repo_id
        return api.upload_folder(repo_id=repo_id, folder_path=export_dir,
                                 commit_message="Upload MPDSPosterPipeline bundle")
    except OSError as error:  # huggingface_hub's HTTP and offline errors are OSErrors
        raise TrainingError(
            f"--push_to_hub {repo_id}: the upload failed ({error}). The bundle is complete in {export_dir}; publish "
            f"it with `hf upload {repo_id} {export_dir}` once logged in (`hf auth login`) with a write token."
        ) from error
