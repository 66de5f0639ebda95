"""Training throughput: `training/train.py` with and without `--cache-latents`, against a straightforward loop.

    python benchmarks/bench_training.py                       # SD 1.5-sized random weights, 256x256, CPU (~10 min)
    python benchmarks/bench_training.py --samples 8 --epochs 3
    python benchmarks/bench_training.py --device cuda --resolution 512 --samples 32 --batch-size 4

Three runs of the `lora` task on the same posters (the embedded sample), the same base weights and batch size:

- straightforward: a loop written the way the diffusers LoRA example trains: every step decodes the images, encodes
  them with the VAE and the prompts with the text encoder, then runs the UNet;
- mpds: `training/train.py` without a cache (it also encodes every step);
- mpds --cache-latents: the first epoch fills the cache, later epochs read latents and text embeddings from it.

Samples/s are per epoch (an epoch is every sample once); the ratios compare each run with the straightforward loop in
the same epoch. The models have random weights: only the speed means something.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _train_script():
    spec = importlib.util.spec_from_file_location("mpds_train_script", ROOT / "training" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def straightforward_loop(base_model: str, dataset: str, options) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds per epoch of a plain loop that encodes every step (no streaming helpers, no cache)."""
    import datasets
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTokenizer

    device = torch.device(options.device)
    vae = AutoencoderKL.from_pretrained(base_model, subfolder="vae").to(device).requires_grad_(False)
    text_encoder = CLIPTextModel.from_pretrained(base_model, subfolder="text_encoder").to(device).requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer")
    unet = UNet2DConditionModel.from_pretrained(base_model, subfolder="unet").to(device).requires_grad_(False)
    scheduler = DDPMScheduler.from_pretrained(base_model, subfolder="scheduler")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    parameters = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    posters = datasets.load_dataset(dataset, "posters", split="train").select(range(options.samples))

    def pixels(image):
        width, height = image.size
        scale = options.resolution / min(width, height)
        image = image.convert("RGB").resize((max(options.resolution, round(width * scale)),
                                             max(options.resolution, round(height * scale))))
        left = (image.size[0] - options.resolution) // 2
        top = (image.size[1] - options.resolution) // 2
        image = image.crop((left, top, left + options.resolution, top + options.resolution))
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)

    epoch_seconds, epoch_cpu_seconds = [], []
    for _ in range(options.epochs):
        started, cpu_started = time.perf_counter(), time.process_time()
        for first in range(0, options.samples, options.batch_size):
            rows = posters[first : first + options.batch_size]
            images = torch.stack([pixels(image) for image in rows["image"]]).to(device)
            ids = tokenizer(rows["prompt"], padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(device)
            with torch.no_grad():
                latents = vae.encode(images).latent_dist.sample() * vae.config.scaling_factor
                text = text_encoder(ids)[0]
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=device)
            prediction = unet(scheduler.add_noise(latents, noise, timesteps), timesteps, text).sample
            loss = F.mse_loss(prediction.float(), noise.float())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds.append(time.perf_counter() - started)
        epoch_cpu_seconds.append(time.process_time() - cpu_started)
    del vae, text_encoder, unet, optimizer
    return epoch_seconds, epoch_cpu_seconds


def mpds_run(train, base_model: str, dataset: str, output_dir: str, options,
             cache: str | None) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds per epoch of `training/train.py`, read from the step times of its training_log.jsonl."""
    steps_per_epoch = -(-options.samples // options.batch_size)
    arguments = [
        "--task", "lora", "--dataset", dataset, "--base_model", base_model, "--output_dir", output_dir,
        "--resolution", str(options.resolution), "--train_batch_size", str(options.batch_size),
        "--max_train_samples", str(options.samples), "--max_train_steps", str(steps_per_epoch * options.epochs),
        "--checkpointing_steps", str(10**9), "--report_to", "none", "--mixed_precision", "no",
    ]
    if cache:
        arguments += ["--cache-latents", cache]
    train.main(arguments)
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    with open(os.path.join(output_dir, "training_log.jsonl")) as handle:
        entries = [json.loads(line) for line in handle]

    def per_epoch(key):
        ends = [entries[steps_per_epoch * (k + 1) - 1][key] for k in range(options.epochs)]
        return [end - start for start, end in zip([0.0] + ends[:-1], ends)]

    return per_epoch("seconds"), per_epoch("cpu_seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="sd15", choices=("sd15", "tiny"), help="layer sizes of the random models")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--samples", type=int, default=3, help="posters per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: 1, which keeps CPU seconds meaningful on shared cores)")
    options = parser.parse_args()

    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    if options.device != "cpu":
        os.environ.pop("ACCELERATE_USE_CPU", None)
    else:
        os.environ["ACCELERATE_USE_CPU"] = "true"
    from mpds.data import build, sample_dir
    from mpds.testing.components import build_poster_pipeline

    work = Path(tempfile.mkdtemp(prefix="mpds-bench-training-"))
    print(f"# {options.size} random weights, {options.resolution}x{options.resolution}, {options.samples} posters x "
          f"{options.epochs} epochs, batch {options.batch_size}, LoRA rank 4, fp32, device {options.device}, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    dataset = work / "mpds"
    build(sample_dir(), dataset, progress=False)
    base_model = work / "base"
    build_poster_pipeline(size=options.size, with_controlnet=False).save_pretrained(base_model)
    print(f"# base model and dataset written to {work}", flush=True)

    train = _train_script()
    results = {}
    results["straightforward loop"] = straightforward_loop(str(base_model), str(dataset), options)
    print(f"  straightforward loop: {results['straightforward loop']}", flush=True)
    results["mpds, no cache"] = mpds_run(train, str(base_model), str(dataset), str(work / "run-plain"), options, None)
    print(f"  mpds, no cache: {results['mpds, no cache']}", flush=True)
    results["mpds --cache-latents"] = mpds_run(train, str(base_model), str(dataset), str(work / "run-cached"),
                                               options, str(work / "cache"))
    print(f"  mpds --cache-latents: {results['mpds --cache-latents']}", flush=True)

    for index, unit in ((0, "wall"), (1, "CPU")):
        reference = results["straightforward loop"][index]
        print(f"\n{unit} time: samples/s per epoch (ratio to the straightforward loop in the same epoch)")
        print("| run | " + " | ".join(f"epoch {k + 1}" for k in range(options.epochs)) + " |")
        print("|" + " --- |" * (options.epochs + 1))
        for name, timings in results.items():
            cells = [f"{options.samples / s:.4f} ({ref / s:.2f}x)" for s, ref in zip(timings[index], reference)]
            print(f"| {name} | " + " | ".join(cells) + " |")
    seconds = {name: {"wall": [round(s, 2) for s in timings[0]], "cpu": [round(s, 2) for s in timings[1]]}
               for name, timings in results.items()}
    print(f"\n(seconds per epoch: {json.dumps(seconds)})")

if __name__ == "__main__":
    main()
