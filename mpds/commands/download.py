"""`mpds download RAW_DIR`: fetch the posters and actor photos of a raw MPDS release."""

from __future__ import annotations

import argparse
import sys

from ..acquisition.download import DownloadConfig, DownloadError, download_release
from .arguments import shard

_DEFAULTS = DownloadConfig()


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download the posters and actor photos of a raw MPDS release from its CSV URLs",
        description="Fill RAW_DIR/posters/<id>.jpg and RAW_DIR/actors/<actor_id>_<k>.jpg from the URLs of meta.csv "
                    "and actors.csv. Every row ends in download_status.jsonl; run again to resume.",
    )
    parser.add_argument("raw_dir", metavar="RAW_DIR", help="folder with meta.csv (and actors.csv)")
    parser.add_argument("--workers", type=int, default=_DEFAULTS.workers,
                        help=f"downloads in flight at once (default {_DEFAULTS.workers})")
    parser.add_argument("--per-host", type=int, default=_DEFAULTS.per_host,
                        help=f"downloads in flight at once to one host (default {_DEFAULTS.per_host})")
    parser.add_argument("--timeout", type=float, default=_DEFAULTS.timeout,
                        help=f"seconds one request may take, body included (default {_DEFAULTS.timeout:g})")
    parser.add_argument("--retries", type=int, default=_DEFAULTS.retries,
                        help=f"retries after a network error, a timeout, 429 or 5xx (default {_DEFAULTS.retries})")
    parser.add_argument("--backoff", type=float, default=_DEFAULTS.backoff,
                        help=f"seconds before the first retry, doubled at each (default {_DEFAULTS.backoff:g})")
    parser.add_argument("--max-backoff", type=float, default=_DEFAULTS.max_backoff,
                        help=f"longest wait between attempts (default {_DEFAULTS.max_backoff:g})")
    parser.add_argument("--max-retry-after", type=float, default=_DEFAULTS.max_retry_after,
                        help="a longer Retry-After fails the URL for this run instead of waiting "
                             f"(default {_DEFAULTS.max_retry_after:g})")
    parser.add_argument("--max-bytes", type=int, default=_DEFAULTS.max_bytes,
                        help=f"larger bodies are refused (default {_DEFAULTS.max_bytes})")
    parser.add_argument("--max-pixels", type=int, default=_DEFAULTS.max_pixels,
                        help=f"images with more pixels are refused before decoding (default {_DEFAULTS.max_pixels})")
    parser.add_argument("--shard", metavar="I/N", type=shard, default=None,
                        help="fetch only part I of N (1 <= I <= N), by movie or actor id")
    parser.add_argument("--status-file", default=None,
                        help="default RAW_DIR/download_status.jsonl (download_status.shard-I-of-N.jsonl with --shard)")
    parser.add_argument("--posters-only", action="store_true", help="skip actors.csv")
    parser.add_argument("--actors-only", action="store_true", help="skip meta.csv posters")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    try:
        config = DownloadConfig(
            workers=args.workers, per_host=args.per_host, timeout=args.timeout, retries=args.retries,
            backoff=args.backoff, max_backoff=args.max_backoff, max_retry_after=args.max_retry_after,
            max_bytes=args.max_bytes, max_pixels=args.max_pixels, shard=args.shard,
            posters=not args.actors_only, actors=not args.posters_only, progress=not args.no_progress,
        )
        summary = download_release(args.raw_dir, config, status_file=args.status_file)
    except DownloadError as error:
        print(f"mpds download: error: {error}", file=sys.stderr)
        return 2
    print(summary.format())
    return 0
