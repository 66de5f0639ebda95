"""Command-line arguments of `training/train.py`, readable from a YAML file too.

Flag names are those of the diffusers training examples (`--max_train_steps`, `--output_dir` ...); each is also
accepted with dashes (`--max-train-steps`). A YAML config (`--config training/configs/lora.yaml`) gives defaults
with the same names (either spelling); flags on the command line win over it.
"""

from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

from .errors import TrainingError

TASKS = ("lora", "actor", "controlnet")

# The paper's recipe ("Implementation Details"): LoRA rank 4 at 1e-4 on 2,000 sampled posters at 512x512; actor
# tokens at 5e-4 decaying to 1e-6 over 500 steps with batches of 4. The ControlNet numbers are diffusers' usual ones
# for fine-tuning a ControlNet (the paper gives none).
TASK_DEFAULTS = {
    "lora": {
        "learning_rate": 1e-4, "lr_scheduler": "constant", "train_batch_size": 1, "max_train_steps": 2000,
        "max_train_samples": 2000, "validation_prompt": "a movie poster of a drama film, the title at the bottom",
    },
    "actor": {
        "learning_rate": 5e-4, "lr_scheduler": "polynomial", "lr_end": 1e-6, "train_batch_size": 4,
        "max_train_steps": 500, "validation_prompt": "a movie poster of {actor}, the title at the bottom",
    },
    "controlnet": {
        "learning_rate": 1e-5, "lr_scheduler": "constant", "train_batch_size": 4, "max_train_steps": 2000,
        "validation_prompt": "a movie poster of a thriller film, the title at the bottom",
        "validation_caption": "NIGHT SHIFT\nANNA LEE, MARK DOE",
    },
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="accelerate launch training/train.py",
        description="Train a poster LoRA, actor tokens or the caption ControlNet on MPDS, and export an "
        "MPDSPosterPipeline bundle.",
    )

    def add(name: str, **kwargs):
        flags = [f"--{name}"]
        if "_" in name:
            flags.append(f"--{name.replace('_', '-')}")
        parser.add_argument(*flags, dest=name, **kwargs)

    add("config", default=None, help="a YAML file of defaults (keys are the flag names)")
    add("task", choices=TASKS, default=None, help="what to train")
    add("dataset", default=None, help="an MPDS folder (`mpds build` output) or Hub dataset repo")
    add("dataset_revision", default=None)
    add("base_model", default=None, help="a Stable Diffusion 1.x model or an mpds bundle (Hub id or folder)")
    add("pretrained_model_name_or_path", default=None, help="same as --base_model (diffusers' name)")
    add("revision", default=None, help="revision of the base model on the Hub")
    add("controlnet", default=None, help="controlnet task: the ControlNet to start from (default: the base "
        "bundle's ControlNet, else one initialised from the UNet)")
    add("output_dir", default=None, help="checkpoints, final weights, logs")
    add("seed", type=int, default=0)

    # data
    add("genres", default=None, help="posters: comma-separated genre splits (default: every poster, split `train`)")
    add("max_train_samples", type=int, default=None, help="posters: keep this many, chosen reproducibly by --seed")
    add("shuffle_buffer_size", type=int, default=1000, help="posters: the streaming shuffle's buffer")
    add("actors", default=None, help="actor: comma-separated actor ids or names (default: every actor)")
    add("initializer_token", default="person", help="actor: the word new actor tokens start from")
    add("resolution", type=int, default=512, help="training images are resized and center-cropped to this")
    add("caption_layout", default="bottom", help="controlnet: layout of the rendered caption (bottom or top)")
    add("cache_latents", default=None, metavar="DIR", help="cache VAE latents and text embeddings in DIR")
    add("save_sample_ids", action="store_true", help="write the ids each process trained on to output_dir/sample_ids/")

    # optimisation
    add("train_batch_size", type=int, default=None, help="per process")
    add("max_train_steps", type=int, default=None)
    add("gradient_accumulation_steps", type=int, default=1)
    add("gradient_checkpointing", action="store_true")
    add("learning_rate", type=float, default=None)
    add("scale_lr", action="store_true", help="multiply the learning rate by batch size, accumulation and processes")
    add("lr_scheduler", default=None, help="constant, constant_with_warmup, linear, cosine, polynomial ...")
    add("lr_warmup_steps", type=int, default=0)
    add("lr_end", type=float, default=None, help="polynomial scheduler: the final learning rate (actor: 1e-6)")
    add("adam_beta1", type=float, default=0.9)
    add("adam_beta2", type=float, default=0.999)
    add("adam_weight_decay", type=float, default=1e-2)
    add("adam_epsilon", type=float, default=1e-8)
    add("max_grad_norm", type=float, default=1.0)
    add("rank", type=int, default=4, help="lora: the LoRA rank")
    add("lora_alpha", type=int, default=None, help="lora: LoRA alpha (default: the rank)")
    add("mixed_precision", choices=("no", "fp16", "bf16"), default=None, help="default: accelerate's config")
    add("allow_tf32", action="store_true")

    # checkpoints, validation, logging
    add("checkpointing_steps", type=int, default=500)
    add("checkpoints_total_limit", type=int, default=None)
    add("resume_from_checkpoint", default=None, help='a checkpoint folder, or "latest" in output_dir')
    add("validation_steps", type=int, default=None, help="generate validation images every N steps (and at the end)")
    add("validation_prompt", default=None)
    add("validation_caption", default=None, help="title and credits (newline-separated) of validation posters")
    add("num_validation_images", type=int, default=1)
    add("validation_inference_steps", type=int, default=30)
    add("report_to", default="tensorboard", help='"tensorboard", "wandb", "all" or "none"')
    add("logging_dir", default="logs", help="TensorBoard logs, under output_dir")

    # output
    add("export", default=None, metavar="DIR", help="write an MPDSPosterPipeline bundle to DIR at the end")
    add("push_to_hub", default=None, metavar="REPO", help="publish the exported bundle to this Hub repo")
    add("hub_token", default=None)
    return parser


def _config_defaults(parser: argparse.ArgumentParser, path: str) -> dict:
    import yaml

    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise TrainingError(f"{path} must hold a mapping of flag names to values, got {type(values).__name__}.")
    known = {action.dest for action in parser._actions}
    defaults = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known or name == "config":
            raise TrainingError(f"{path}: unknown setting {key!r}; settings are the flag names of --help.")
        defaults[name] = ",".join(map(str, value)) if isinstance(value, list) else value
    return defaults


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse `argv` (default: `sys.argv[1:]`) after the YAML config it names, fill the task's defaults, check them.

    Raises:
        TrainingError: for a missing task, dataset, base model or output folder, or inconsistent values.
    """
    parser = _build_parser()
    known, _ = parser.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**_config_defaults(parser, known.config))
    args = parser.parse_args(argv)

    args.base_model = args.base_model or args.pretrained_model_name_or_path
    required = (("--task", args.task), ("--dataset", args.dataset), ("--base_model", args.base_model),
                ("--output_dir", args.output_dir))
    missing = [flag for flag, value in required if not value]
    if missing:
        raise TrainingError(f"Missing {', '.join(missing)} (on the command line or in --config).")
    for name, value in TASK_DEFAULTS[args.task].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.lr_end = 1e-7 if args.lr_end is None else args.lr_end
    args.lora_alpha = args.lora_alpha or args.rank
    args.genres = [genre.strip() for genre in args.genres.split(",") if genre.strip()] if args.genres else []
    args.actors = [actor.strip() for actor in args.actors.split(",") if actor.strip()] if args.actors else []

    if args.resolution <= 0 or args.resolution % 8 != 0:
        raise TrainingError(
            f"--resolution must be a positive multiple of 8 (the VAE shrinks images by 8), got {args.resolution}; "
            f"try {max(8, round(args.resolution / 8) * 8)}."
        )
    for name in ("train_batch_size", "max_train_steps", "gradient_accumulation_steps", "checkpointing_steps",
                 "num_validation_images"):
        if getattr(args, name) < 1:
            raise TrainingError(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.max_train_samples is not None and args.max_train_samples < 1:
        raise TrainingError(f"--max_train_samples must be at least 1, got {args.max_train_samples}.")
    if args.validation_steps is not None and args.validation_steps < 1:
        raise TrainingError(f"--validation_steps must be at least 1, got {args.validation_steps}.")
    if args.push_to_hub and not args.export:
        raise TrainingError("--push_to_hub publishes the exported bundle; give --export DIR too.")
    args.output_dir = os.path.abspath(args.output_dir)
    return args
