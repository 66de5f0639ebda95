"""`mpds caption RAW_DIR --model ID`: write the posters' vision-perceptive prompts into posters.csv."""

from __future__ import annotations

import sys

from ..acquisition.caption import DEFAULT_MODEL, DEFAULT_PROMPT, CaptionError, caption_posters
from ..data.raw import RawFormatError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "caption",
        help="caption the posters of a raw MPDS release into the text column of posters.csv",
        description="Caption RAW_DIR/posters/<id>.jpg with an image-to-text model into posters.csv (columns id, text, "
                    "text-source). Captions marked text-source=human, or unmarked, are kept; run again to resume.",
    )
    parser.add_argument("raw_dir", metavar="RAW_DIR", help="folder with meta.csv and posters/")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model id or folder (default {DEFAULT_MODEL})")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT,
                        help=f"text the model continues; '' for none (default {DEFAULT_PROMPT!r})")
    parser.add_argument("--no-keep-prompt", action="store_true",
                        help="write only the model's words, not the prompt in front (for a question prompt)")
    parser.add_argument("--batch-size", type=int, default=8, help="posters per batch (default 8)")
    parser.add_argument("--device", default=None, help="default: cuda, else mps, else cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="model precision (default float32; float16 halves GPU memory)")
    parser.add_argument("--overwrite", action="store_true", help="replace captions written by a model")
    parser.add_argument("--overwrite-human", action="store_true",
                        help="replace human-written and unmarked captions too")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="default 40")
    parser.add_argument("--num-beams", type=int, default=1, help="default 1 (greedy)")
    parser.add_argument("--save-every", type=int, default=10_000,
                        help="rewrite posters.csv after this many captions (default 10000)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow code from the model repository to run (only for models you trust)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    try:
        summary = caption_posters(
            args.raw_dir, args.model, prompt=args.prompt, keep_prompt=not args.no_keep_prompt,
            batch_size=args.batch_size, device=args.device, dtype=args.dtype, overwrite=args.overwrite,
            overwrite_human=args.overwrite_human, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
            save_every=args.save_every, trust_remote_code=args.trust_remote_code, progress=not args.no_progress,
        )
    except (CaptionError, RawFormatError) as error:
        print(f"mpds caption: error: {error}", file=sys.stderr)
        return 2
    print(summary.format())
    return 0
