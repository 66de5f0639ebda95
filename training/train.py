#!/usr/bin/env python
"""Train on MPDS, then export an `MPDSPosterPipeline` bundle.

    accelerate launch training/train.py --task lora --dataset DATASET --base-model BASE --output_dir OUT
    accelerate launch training/train.py --config training/configs/actor.yaml --export bundle/

Tasks (see docs/training.md):
- `lora`: a LoRA adapter on the UNet's attention projections, on the `posters` config (text: the `prompt` column);
- `actor`: one textual-inversion token per actor, on the photos of the `actors` config;
- `controlnet`: the caption ControlNet, on (poster, Canny edges of its rendered `caption`) pairs.

The script reads top to bottom: 1. arguments, 2. accelerator, 3. data, 4. models, 5. optimizer, 6. checkpoint
hooks and resume, 7. training loop (with checkpoints and validation), 8. final weights, export and upload.
Run as a command, it first makes `accelerate launch --cpu --num_processes N` start N processes
(`mpds.training.launch`; accelerate alone starts one without MPI).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
import time

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, gather_object, set_seed
from tqdm.auto import tqdm

# Run from a checkout without installing mpds: the repository root is this file's parent's parent.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mpds.training import TrainingError, parse_args  # noqa: E402
from mpds.training.cache import LatentCache, encode_batch  # noqa: E402
from mpds.training.data import (  # noqa: E402
    BatchStream, Collator, actor_epochs, actor_examples, caption_control_image, poster_epochs, poster_stream,
)
from mpds.training.launch import relaunch_cpu_processes_if_needed  # noqa: E402
from mpds.training.models import (  # noqa: E402
    load_models, load_trained_weights, save_trained_weights, trainable_parameters,
)

logger = get_logger(__name__)
TRAINING_LOG = "training_log.jsonl"


class NoiseGenerator:
    """The generator of the training noise and timesteps (one per process), saved in every checkpoint.

    A dedicated generator (rather than torch's global one) keeps the noise sequence independent of anything else
    that draws random numbers, which is what lets a resumed run repeat an uninterrupted run's losses.
    """

    def __init__(self, seed: int, device: torch.device, process_index: int):
        self.process_index = process_index
        self.generator = torch.Generator(device=device).manual_seed(seed + process_index)

    def state_dict(self) -> dict:
        return {"states": gather_object([self.generator.get_state()])}  # every process's, saved by the main one

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["states"][self.process_index])


def compute_loss(task, models, model, batch, encoded, generator, weight_dtype):
    """The denoising loss of one batch: noise the latents at random timesteps and predict the noise (or velocity).

    `model` is the trained module as accelerate prepared it (the UNet, text encoder or ControlNet); `encoded` holds
    the latent means and stds (and the text embeddings unless the text encoder is trained) from `encode_batch`.
    """
    scheduler = models.noise_scheduler
    mean, std = encoded["latent_mean"], encoded["latent_std"]
    device = mean.device
    latents = mean + std * torch.randn(mean.shape, generator=generator, device=device)
    latents = (latents * models.vae.config.scaling_factor).to(weight_dtype)
    noise = torch.randn(latents.shape, generator=generator, device=device).to(weight_dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator,
                              device=device)
    noisy_latents = scheduler.add_noise(latents, noise, timesteps)

    if task == "actor":
        encoder_hidden_states = model(batch["input_ids"])[0].to(weight_dtype)
    else:
        encoder_hidden_states = encoded["text_embeddings"].to(weight_dtype)

    if task == "controlnet":
        down_residuals, mid_residual = model(
            noisy_latents, timesteps, encoder_hidden_states=encoder_hidden_states,
            controlnet_cond=batch["conditioning_pixel_values"].to(dtype=weight_dtype), return_dict=False,
        )
        prediction = models.unet(
            noisy_latents, timesteps, encoder_hidden_states=encoder_hidden_states,
            down_block_additional_residuals=[residual.to(weight_dtype) for residual in down_residuals],
            mid_block_additional_residual=mid_residual.to(weight_dtype), return_dict=False,
        )[0]
    else:
        unet = model if task == "lora" else models.unet
        prediction = unet(noisy_latents, timesteps, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]

    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return F.mse_loss(prediction.float(), target.float(), reduction="mean")


def generate_validation_images(args, models, accelerator, step, weight_dtype):
    """Posters from the model being trained (`MPDSPosterPipeline` on its current components), saved and logged."""
    from diffusers import DDIMScheduler

    from mpds.pipeline import MPDSPosterPipeline

    trained = accelerator.unwrap_model(models.trainable)
    controlnet = models.controlnet
    if args.task == "controlnet":
        controlnet = trained
        if weight_dtype != torch.float32:
            # A copy in the UNet's precision, so the float32 weights being trained never go through a lower one. The
            # copy drops the forward wrapper accelerate put on the trained model for mixed precision: that wrapper
            # returns float32 outputs, and float32 residuals added to the UNet's bf16/fp16 activations make the
            # UNet's group norms fail on a CPU ("mixed dtype (CPU): expect parameter to have scalar type of Float").
            controlnet = accelerator.unwrap_model(copy.deepcopy(trained), keep_fp32_wrapper=False).to(weight_dtype)
    pipe = MPDSPosterPipeline(
        vae=models.vae, text_encoder=accelerator.unwrap_model(models.text_encoder) if args.task != "actor" else trained,
        tokenizer=models.tokenizer, unet=models.unet,
        scheduler=DDIMScheduler.from_config(models.noise_scheduler.config),
        controlnet=controlnet,
    )
    pipe.set_progress_bar_config(disable=True)
    prompt = args.validation_prompt
    if "{actor}" in prompt:
        prompt = prompt.replace("{actor}", next(iter(models.actor_tokens.values()), "a person"))
    control_image = None
    if args.task == "controlnet" and args.validation_caption:  # drawn as the training captions are
        control_image = caption_control_image(args.validation_caption, args.resolution, args.caption_layout)
    generator = torch.Generator(device=accelerator.device).manual_seed(args.seed)
    trained.eval()
    with accelerator.autocast():
        images = [pipe(prompt, control_image=control_image, height=args.resolution, width=args.resolution,
                       generator=generator, num_inference_steps=args.validation_inference_steps).images[0]
                  for _ in range(args.num_validation_images)]
    trained.train()

    folder = os.path.join(args.output_dir, "validation")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for k, image in enumerate(images):
        paths.append(os.path.join(folder, f"step-{step:06d}-{k}.png"))
        image.save(paths[-1])
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            import numpy as np

            tracker.writer.add_images("validation", np.stack([np.asarray(image) for image in images]), step,
                                      dataformats="NHWC")
    return paths


def _checkpoints(output_dir):
    names = [name for name in os.listdir(output_dir) if re.fullmatch(r"checkpoint-\d+", name)] \
        if os.path.isdir(output_dir) else []
    return sorted(names, key=lambda name: int(name.split("-")[1]))


def main(argv=None) -> dict:
    # 1. Arguments; never write over an earlier run
    args = parse_args(argv)
    if not args.resume_from_checkpoint and _checkpoints(args.output_dir):
        raise TrainingError(
            f"{args.output_dir} already holds {', '.join(_checkpoints(args.output_dir))}: continue that run with "
            "--resume_from_checkpoint latest, or choose another --output_dir (nothing there was changed)."
        )
    if args.export and os.path.isdir(args.export) and os.listdir(args.export):
        raise TrainingError(f"--export {args.export} exists and is not empty; remove it or choose another folder.")

    # 2. Accelerator: devices, precision, processes, trackers
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=args.output_dir,
                                            logging_dir=os.path.join(args.output_dir, args.logging_dir)),
    )
    if args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    set_seed(args.seed)  # the same initial weights (LoRA, ControlNet) in every process
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "run_info.txt"), "w") as handle:
            handle.write(f"task={args.task} num_processes={accelerator.num_processes} "
                         f"distributed_type={accelerator.distributed_type} device={accelerator.device} "
                         f"mixed_precision={accelerator.mixed_precision}\n")

    # 3. Data: this process's part of the stream
    actor_names = None
    if args.task == "actor":
        actor_names, photos = actor_examples(args, accelerator.process_index, accelerator.num_processes)
        read_epoch, describe = actor_epochs(photos, actor_names, args.seed), f"the actors of {args.dataset}"
    else:
        stream = poster_stream(args, accelerator.process_index, accelerator.num_processes)
        read_epoch = poster_epochs(stream, args.seed, args.shuffle_buffer_size, args.max_train_samples,
                                   accelerator.process_index, accelerator.num_processes)
        describe = f"the posters of {args.dataset}"

    # 4. Models: the base frozen (in the compute precision), the trained part in float32
    models = load_models(args, actor_names)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    models.vae.to(accelerator.device, dtype=weight_dtype)
    models.unet.to(accelerator.device, dtype=weight_dtype)
    models.text_encoder.to(accelerator.device, dtype=torch.float32 if args.task == "actor" else weight_dtype)
    if models.controlnet is not None:
        models.controlnet.to(accelerator.device, dtype=torch.float32 if args.task == "controlnet" else weight_dtype)
    for parameter in trainable_parameters(models):
        parameter.data = parameter.data.float()
    if args.gradient_checkpointing:
        if args.task == "actor":
            models.text_encoder.gradient_checkpointing_enable()
        models.unet.enable_gradient_checkpointing()
        if args.task == "controlnet":
            models.controlnet.enable_gradient_checkpointing()

    # 5. Optimizer and learning-rate schedule
    from diffusers.optimization import get_polynomial_decay_schedule_with_warmup, get_scheduler

    learning_rate = args.learning_rate
    if args.scale_lr:
        learning_rate *= args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
    optimizer = torch.optim.AdamW(
        trainable_parameters(models), lr=learning_rate, betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=0.0 if args.task == "actor" else args.adam_weight_decay, eps=args.adam_epsilon,
    )
    # The prepared scheduler steps once per process at each optimizer step: count its steps that way.
    scheduler_steps = args.max_train_steps * accelerator.num_processes
    warmup_steps = args.lr_warmup_steps * accelerator.num_processes
    if args.lr_scheduler == "polynomial":
        lr_scheduler = get_polynomial_decay_schedule_with_warmup(
            optimizer, warmup_steps, scheduler_steps, lr_end=min(args.lr_end, learning_rate * 0.999))
    else:
        lr_scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=warmup_steps,
                                     num_training_steps=scheduler_steps)

    cache = None
    if args.cache_latents:
        cache = LatentCache(args.cache_latents, args.base_model, args.resolution, with_text=args.task != "actor")
    collate = Collator(args.task, models.tokenizer, args.resolution, cache, args.caption_layout)
    batches = BatchStream(read_epoch, collate, args.train_batch_size, describe)
    noise = NoiseGenerator(args.seed, accelerator.device, accelerator.process_index)

    models.trainable, optimizer, lr_scheduler = accelerator.prepare(models.trainable, optimizer, lr_scheduler)
    if args.task == "actor":
        models.text_encoder = models.trainable

    # 6. Checkpoints hold the trained weights only (not the frozen base), the data position and the noise state
    def save_hook(hook_models, weights, output_dir):
        if accelerator.is_main_process:
            for model in hook_models:
                save_trained_weights(args.task, accelerator.unwrap_model(model), models, output_dir)
        while weights:
            weights.pop()

    def load_hook(hook_models, input_dir):
        while hook_models:
            load_trained_weights(args.task, accelerator.unwrap_model(hook_models.pop()), models, input_dir)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)
    accelerator.register_for_checkpointing(batches, noise)

    global_step, last_checkpoint = 0, None
    if args.resume_from_checkpoint:
        if args.resume_from_checkpoint == "latest":
            found = _checkpoints(args.output_dir)
            last_checkpoint = os.path.join(args.output_dir, found[-1]) if found else None
        else:
            last_checkpoint = os.path.abspath(args.resume_from_checkpoint)
        if last_checkpoint is None:
            logger.info(f"No checkpoint in {args.output_dir}: starting a new run.", main_process_only=True)
        elif not os.path.isdir(last_checkpoint):
            raise TrainingError(f"--resume_from_checkpoint {args.resume_from_checkpoint}: no such checkpoint folder.")
        else:
            accelerator.load_state(last_checkpoint)
            global_step = int(os.path.basename(last_checkpoint).split("-")[1])
            logger.info(f"Resumed from {last_checkpoint} at step {global_step}.", main_process_only=True)

    log_path = os.path.join(args.output_dir, TRAINING_LOG)
    if accelerator.is_main_process:
        # A resumed run rewrites the history after its checkpoint; a new run starts an empty one.
        kept = []
        if global_step and os.path.isfile(log_path):
            with open(log_path) as handle:
                kept = [line for line in handle if json.loads(line)["step"] <= global_step]
        with open(log_path, "w") as handle:
            handle.writelines(kept)
        tracker_config = {key: value for key, value in vars(args).items() if isinstance(value, (int, float, str, bool))}
        accelerator.init_trackers("mpds-training", config=tracker_config)

    # 7. Training loop
    logger.info(f"Training {args.task} for {args.max_train_steps} steps of {args.train_batch_size} x "
                f"{args.gradient_accumulation_steps} x {accelerator.num_processes} samples.", main_process_only=True)
    progress_bar = tqdm(range(args.max_train_steps), initial=global_step, desc="steps",
                        disable=not accelerator.is_local_main_process)
    losses, step_loss, validation_images = [], 0.0, []
    batch_iterator = iter(batches)
    started, cpu_started = time.perf_counter(), time.process_time()
    while global_step < args.max_train_steps:
        batch = next(batch_iterator)
        batch["input_ids"] = batch["input_ids"].to(accelerator.device)
        if "conditioning_pixel_values" in batch:
            batch["conditioning_pixel_values"] = batch["conditioning_pixel_values"].to(accelerator.device)
        with accelerator.accumulate(models.trainable):
            encoded = encode_batch(batch, models.vae, models.text_encoder, cache, weight_dtype,
                                   encode_text=args.task != "actor")
            with accelerator.autocast():
                loss = compute_loss(args.task, models, models.trainable, batch, encoded, noise.generator, weight_dtype)
            gathered = accelerator.gather(loss.detach().reshape(1))
            if not torch.isfinite(gathered).all():
                # Stop before the bad step reaches the weights; everything already saved stays as it is.
                raise TrainingError(
                    f"The loss is {gathered.tolist()} at step {global_step + 1}: training stopped before updating "
                    f"the weights. Last checkpoint: {last_checkpoint or 'none saved yet'}. Lower --learning_rate "
                    "or use --mixed_precision no, then resume with --resume_from_checkpoint latest."
                )
            step_loss += gathered.mean().item() / args.gradient_accumulation_steps
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(trainable_parameters(models), args.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)

        if accelerator.sync_gradients:
            global_step += 1
            progress_bar.update(1)
            losses.append(step_loss)
            learning_rate_now = lr_scheduler.get_last_lr()[0]
            progress_bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{learning_rate_now:.2e}")
            accelerator.log({"loss": step_loss, "lr": learning_rate_now}, step=global_step)
            if accelerator.is_main_process:
                with open(log_path, "a") as handle:
                    handle.write(json.dumps({"step": global_step, "loss": step_loss, "lr": learning_rate_now,
                                             "seconds": round(time.perf_counter() - started, 4),
                                             "cpu_seconds": round(time.process_time() - cpu_started, 4)}) + "\n")
            step_loss = 0.0

            if global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps:
                last_checkpoint = os.path.join(args.output_dir, f"checkpoint-{global_step}")
                accelerator.save_state(last_checkpoint)
                if accelerator.is_main_process and args.checkpoints_total_limit:
                    for name in _checkpoints(args.output_dir)[: -args.checkpoints_total_limit]:
                        shutil.rmtree(os.path.join(args.output_dir, name))
                accelerator.wait_for_everyone()

            validate_now = args.validation_steps and (global_step % args.validation_steps == 0
                                                      or global_step == args.max_train_steps)
            if validate_now and accelerator.is_main_process:
                validation_images = generate_validation_images(args, models, accelerator, global_step, weight_dtype)

    # 8. Final weights, the samples each process read, the bundle
    accelerator.wait_for_everyone()
    seen = sorted(set(batches.seen_ids))
    if args.save_sample_ids:
        folder = os.path.join(args.output_dir, "sample_ids")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"process_{accelerator.process_index}.txt"), "w") as handle:
            handle.write("\n".join(seen) + "\n")
    num_samples = sum(gather_object([len(seen)]))
    summary = {"task": args.task, "steps": global_step, "losses": losses, "num_samples": num_samples,
               "final_loss": _final_loss(log_path), "validation_images": validation_images,
               "last_checkpoint": last_checkpoint, "export": None}
    if accelerator.is_main_process:
        save_trained_weights(args.task, accelerator.unwrap_model(models.trainable), models, args.output_dir)
        if args.export:
            from mpds.training.export import export_bundle, push_bundle

            del models, optimizer  # the export reloads the base in full precision
            summary["export"] = export_bundle(args, args.output_dir, args.export, summary)
            if args.push_to_hub:
                summary["hub_commit"] = str(push_bundle(args.export, args.push_to_hub, args.hub_token))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def _final_loss(log_path):
    if not os.path.isfile(log_path):
        return None
    with open(log_path) as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    return lines[-1]["loss"] if lines else None


if __name__ == "__main__":
    # 0. `accelerate launch --cpu --num_processes N` (N > 1) started this one process only: start the N it asked for.
    relaunch_cpu_processes_if_needed()
    try:
        main()
    except TrainingError as error:
        sys.exit(f"error: {error}")
