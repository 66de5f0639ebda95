"""`mpds generate PROMPT`: one poster from a prompt, a caption and an actor; writes the poster and its control image."""

import sys
from pathlib import Path

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_CONTROLNET = "lllyasviel/sd-controlnet-canny"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate a movie poster",
        description="Generate a poster; `{actor}` in PROMPT marks where the actor goes. "
        "Writes OUT and, beside it, OUT's name + '_control' (the caption's Canny edges).",
    )
    parser.add_argument("prompt", help='e.g. "a noir movie poster of {actor} in the rain, title at the bottom"')
    parser.add_argument("--title", help="the caption's title (turns the caption branch on)")
    parser.add_argument("--credits", nargs="*", default=[], help="billing lines, each one argument")
    parser.add_argument("--tagline", help="a line of ad copy")
    parser.add_argument("--layout", default="bottom", help="caption layout: bottom or top (default: bottom)")
    parser.add_argument("--font", help="a TrueType/OpenType font file for the caption")
    parser.add_argument("--actor", help="a loaded actor's name (bundle actors, or one loaded with --actor-embedding)")
    parser.add_argument(
        "--actor-embedding", action="append", default=[], metavar="PATH_OR_REPO",
        help="load an actor's learned_embeds.safetensors first (repeatable)",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"an mpds bundle or base model (default: {DEFAULT_MODEL})")
    parser.add_argument(
        "--controlnet", default=DEFAULT_CONTROLNET,
        help=f"caption ControlNet when the model has none (default: {DEFAULT_CONTROLNET})",
    )
    parser.add_argument("--out", default="poster.png", help="where to write the poster (default: poster.png)")
    parser.add_argument("--negative-prompt", default=None)
    parser.add_argument(
        "--scales", nargs=3, type=float, metavar=("S1", "S2", "S3"),
        help="guidance_scale, actor_guidance_scale, caption_guidance_scale (default: 7.5 7.5 7.5)",
    )
    parser.add_argument("--controlnet-scale", type=float, default=1.0, help="controlnet_conditioning_scale")
    parser.add_argument("--steps", type=int, default=30, help="num_inference_steps (default: 30)")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default=None, help="cuda, mps, cpu... (default: cuda, else mps, else cpu)")
    parser.set_defaults(func=run)


def _has_controlnet(model: str) -> bool:
    from mpds.pipeline import MPDSPosterPipeline

    controlnet = MPDSPosterPipeline.load_config(model).get("controlnet")
    return bool(controlnet) and controlnet[0] is not None


def run(args) -> int:
    import torch

    from mpds.devices import best_device
    from mpds.pipeline import MPDSPosterPipeline, PosterCaption

    device = args.device or best_device()
    # Half precision on GPUs only; on CPUs the components keep their stored float32.
    dtype_kwargs = {"torch_dtype": torch.float16} if device.startswith(("cuda", "mps")) else {}
    caption = None
    if args.title or args.credits or args.tagline:
        caption = PosterCaption(args.title or "", credits=tuple(args.credits), tagline=args.tagline, layout=args.layout)

    try:
        load_kwargs = dict(dtype_kwargs)
        if caption is not None and not _has_controlnet(args.model):
            from diffusers import ControlNetModel

            load_kwargs["controlnet"] = ControlNetModel.from_pretrained(
                args.controlnet, use_safetensors=True, **dtype_kwargs
            )
        pipe = MPDSPosterPipeline.from_pretrained(args.model, **load_kwargs).to(device)
        for embedding in args.actor_embedding:
            pipe.load_actor(embedding)

        scales = args.scales or (7.5, 7.5, 7.5)
        # A CPU generator on Apple GPUs, as diffusers advises, for the same image on every run.
        generator_device = "cpu" if device.startswith("mps") else device
        generator = torch.Generator(generator_device).manual_seed(args.seed) if args.seed is not None else None
        output = pipe(
            args.prompt,
            caption=caption,
            actor=args.actor,
            negative_prompt=args.negative_prompt,
            guidance_scale=scales[0],
            actor_guidance_scale=scales[1],
            caption_guidance_scale=scales[2],
            controlnet_conditioning_scale=args.controlnet_scale,
            font=args.font,
            height=args.height,
            width=args.width,
            num_inference_steps=args.steps,
            generator=generator,
        )
    except ValueError as error:
        print(f"mpds generate: error: {error}", file=sys.stderr)
        return 2

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    output.images[0].save(out)
    print(f"poster: {out}")
    if output.control_images:
        control = out.with_name(f"{out.stem}_control{out.suffix}")
        output.control_images[0].save(control)
        print(f"control image: {control}")
    return 0
