"""`mpds stats DIR`: per-genre counts, missing-field shares, and the paper's Fig. 2 as PNG."""

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("stats", help="statistics of a built dataset or a raw release")
    parser.add_argument("path", help="an `mpds build` folder or a raw release")
    parser.add_argument("--plot", help="where to save the figure (default: PATH/mpds_stats.png)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mpds.data import plot_stats, stats_of

    stats = stats_of(args.path)
    print(stats)
    figure = plot_stats(stats, args.plot or Path(args.path) / "mpds_stats.png")
    print(f"\nFig. 2 (record types, genres) saved to {figure}")
    return 0
