"""`mpds build RAW_DIR OUT_DIR` and `mpds merge OUT_DIR`: write the hub layout of a raw release."""

from .arguments import shard


def register(subparsers) -> None:
    parser = subparsers.add_parser("build", help="build a raw MPDS release into the hub layout (Parquet + card)",
                                   description="Build a raw MPDS release into the hub layout. Re-running resumes.")
    parser.add_argument("raw_dir", help="folder with meta.csv, posters.csv, actors.csv, posters/ and actors/")
    parser.add_argument("out_dir", help="output folder (created; an unfinished build there is resumed)")
    parser.add_argument("--format", choices=("parquet", "webdataset"), default="parquet",
                        help="shard format of the posters config (default: parquet)")
    parser.add_argument("--num-proc", type=int, default=1, help="worker processes (default: 1)")
    parser.add_argument("--shard", type=shard, default=(0, 1), metavar="i/N",
                        help="build only shard i of N; then copy all shards into one folder and run `mpds merge`")
    parser.add_argument("--max-shard-size", default="500MB", help="size of a train shard (default: 500MB)")
    parser.add_argument("--block-size", type=int, default=256, help="meta.csv rows per unit of resumable work")
    parser.add_argument("--min-image-bytes", type=int, default=5 * 1024, help="smaller images are rejected (5 KB)")
    parser.add_argument("--posters-dir", default="posters")
    parser.add_argument("--actors-dir", default="actors")
    parser.add_argument("--tokenizer", help="CLIP tokenizer (name or path) to fit prompts exactly to 77 tokens")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)

    merge = subparsers.add_parser("merge", help="check a sharded build is complete and write its card")
    merge.add_argument("out_dir")
    merge.set_defaults(func=run_merge)


def run(args) -> int:
    from mpds.data import BuildOptions, build

    options = BuildOptions(format=args.format, num_proc=args.num_proc, shard=args.shard,
                           max_shard_size=args.max_shard_size, block_size=args.block_size,
                           min_image_bytes=args.min_image_bytes, posters_dir=args.posters_dir,
                           actors_dir=args.actors_dir, tokenizer=args.tokenizer)
    summary = build(args.raw_dir, args.out_dir, options, progress=not args.quiet)
    if summary is not None:
        print(summary)
    return 0


def run_merge(args) -> int:
    from mpds.data import merge

    print(merge(args.out_dir))
    return 0
