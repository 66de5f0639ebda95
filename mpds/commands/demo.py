"""`mpds demo`: the main job on the embedded sample, offline."""

import os
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="build the embedded sample, load it back and show its statistics")
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
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
    return 0
