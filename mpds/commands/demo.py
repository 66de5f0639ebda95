"""`mpds demo`: the main job on the embedded sample, offline.

Builds the sample into the hub layout and loads it back, then trains each task of `training/train.py` for a few
steps on tiny random-weight components (LoRA, then actor tokens on that bundle, then the caption ControlNet on that
one), loads the final bundle with `MPDSPosterPipeline.from_pretrained` and generates a poster with a title and an
actor. Writes the statistics figure, the poster, its control image and the training curves as PNGs.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REAL_BASE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
REAL_CONTROLNET = "lllyasviel/sd-controlnet-canny"
RESOLUTION = 64


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="build the embedded sample, train each task a few steps on tiny models, generate a poster"
    )
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per task (default: 20)")
    parser.add_argument("--skip-training", action="store_true", help="stop after the dataset steps")
    parser.set_defaults(func=run)


def run(args) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from mpds.data import build, load_dataset, plot_stats, sample_dir, stats_of

    out = Path(args.out)
    hub = out / "mpds-sample"
    print(f"1. Building the embedded sample ({sample_dir()}) into the hub layout at {hub}")
    summary = build(sample_dir(), hub)
    print(summary)

    print("\n2. Loading it back with datasets.load_dataset")
    drama = load_dataset("posters", split="drama", path=str(hub), streaming=True)
    first = next(iter(drama))
    print(f"   posters/drama (streaming): {first['title']!r}, image {first['image'].size}, genres {first['genres']}")
    print(f"   prompt:  {first['prompt']}")
    print(f"   caption: {first['caption']!r}")
    for config in ("posters", "actors", "meta"):
        loaded = load_dataset(config, path=str(hub))
        print(f"   {config}: " + ", ".join(f"{name} {len(split)}" for name, split in loaded.items()))

    print("\n3. Statistics")
    stats = stats_of(hub)
    print(stats)
    figure = plot_stats(stats, out / "mpds_stats.png")
    print(f"\nFig. 2 saved to {figure}; the card is {hub / 'README.md'}, the rejects {hub / 'rejects.jsonl'}")
    if args.skip_training:
        return 0
    return _train_and_generate(out, hub, args.steps)


def _train_script() -> Path:
    script = Path(__file__).resolve().parents[2] / "training" / "train.py"
    if not script.is_file():
        raise SystemExit(f"The training part of the demo needs a checkout of mpds (training/train.py, looked for "
                         f"{script}); run it from the repository with `python3 dev.py demo`.")
    return script


def _train(script: Path, task: str, base_model: Path, hub: Path, out: Path, steps: int, *extra: str) -> Path:
    """Run `training/train.py` as a user would (one process), return the exported bundle."""
    run_dir, bundle = out / "runs" / task, out / "bundles" / task
    command = [
        sys.executable, str(script), "--task", task, "--dataset", str(hub), "--base-model", str(base_model),
        "--output_dir", str(run_dir), "--resolution", str(RESOLUTION), "--train_batch_size", "2",
        "--max_train_steps", str(steps), "--checkpointing_steps", str(steps), "--validation_steps", str(steps),
        "--validation_inference_steps", "4", "--report_to", "tensorboard", "--export", str(bundle), *extra,
    ]
    print(f"   $ {shlex.join(['python'] + command[1:])}", flush=True)
    # Tiny models run fastest on one thread (several threads on busy cores mostly wait for each other).
    environment = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"training the {task} task failed (exit status {result.returncode})")
    with open(run_dir / "training_log.jsonl") as handle:
        losses = [json.loads(line)["loss"] for line in handle]
    print(f"   {task}: {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}; bundle {bundle}")
    return bundle


def _plot_curves(out: Path, tasks: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        with open(out / "runs" / task / "training_log.jsonl") as handle:
            entries = [json.loads(line) for line in handle]
        axis.plot([entry["step"] for entry in entries], [entry["loss"] for entry in entries], marker=".")
        axis.set_title(f"{task}")
        axis.set_xlabel("step")
        axis.set_ylabel("loss")
        axis.grid(alpha=0.3)
    figure.suptitle("Training loss (tiny random-weight models)")
    figure.tight_layout()
    path = out / "training_curves.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _train_and_generate(out: Path, hub: Path, steps: int) -> int:
    import torch

    from mpds.pipeline import MPDSPosterPipeline, PosterCaption
    from mpds.testing.components import build_poster_pipeline

    script = _train_script()
    for earlier in ("runs", "bundles", "cache"):  # a new demo is a new run
        shutil.rmtree(out / earlier, ignore_errors=True)
    print("\n4. A tiny Stable Diffusion with random weights, as the base model (no download)")
    base = out / "tiny-base"
    build_poster_pipeline(size="tiny", with_controlnet=False).save_pretrained(base)
    print(f"   saved to {base}")

    print(f"\n5. Training each task for {steps} steps with training/train.py, each on the previous one's bundle")
    lora = _train(script, "lora", base, hub, out, steps, "--cache-latents", str(out / "cache"),
                  "--learning_rate", "1e-3", "--max_train_samples", "16")
    actor = _train(script, "actor", lora, hub, out, steps, "--actors", "Ava Stone,Liam Tanaka",
                   "--learning_rate", "5e-3")
    final = _train(script, "controlnet", actor, hub, out, steps, "--learning_rate", "1e-4",
                   "--genres", "drama,thriller")
    curves = _plot_curves(out, ["lora", "actor", "controlnet"])
    print(f"   training curves: {curves}; TensorBoard: tensorboard --logdir {out / 'runs'}")

    print("\n6. Loading the final bundle with MPDSPosterPipeline.from_pretrained and generating a poster")
    pipe = MPDSPosterPipeline.from_pretrained(final)
    pipe.set_progress_bar_config(disable=True)
    print(f"   LoRA adapters {pipe.get_active_adapters()}, actors {pipe.actors}, ControlNet "
          f"{'yes' if pipe.controlnet is not None else 'no'}")
    output = pipe(
        "a movie poster of {actor} in a rainy street, the title at the bottom",
        caption=PosterCaption("NIGHT SHIFT"),
        actor=pipe.actors[0],
        height=RESOLUTION,
        width=RESOLUTION,
        num_inference_steps=20,
        generator=torch.Generator().manual_seed(0),
    )
    poster, control = out / "poster.png", out / "poster_control.png"
    output.images[0].save(poster)
    output.control_images[0].save(control)
    print(f"   poster: {poster}; its control image (the caption's Canny edges): {control}")

    print(
        "\nThe models above have tiny random weights: the poster is noise, and only shows that every stage runs.\n"
        "With the real base model (online; a GPU is advised), the same steps are:\n"
        f"  accelerate launch training/train.py --task lora --dataset {hub} --base-model {REAL_BASE_MODEL} "
        "--output_dir runs/lora --export bundles/lora\n"
        f"  accelerate launch training/train.py --task actor --dataset {hub} --base-model bundles/lora "
        "--output_dir runs/actor --export bundles/actor\n"
        f"  accelerate launch training/train.py --task controlnet --dataset {hub} --base-model bundles/actor "
        f"--controlnet {REAL_CONTROLNET} --output_dir runs/controlnet --export bundles/mpds\n"
        '  mpds generate "a movie poster of {actor} in the rain" --model bundles/mpds --actor ava_stone '
        '--title "NIGHT SHIFT" --out poster.png\n'
        "(or the whole MPDS instead of the sample: --dataset mpds/movie-posters; see docs/training.md)"
    )
    return 0
