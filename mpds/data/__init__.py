"""The MPDS dataset: raw release -> records and prompts -> hub layout -> `load_dataset`."""

from .builder import MPDSBuilder, MPDSConfig
from .hub_layout import BuildError, BuildOptions, BuildSummary, build, merge
from .load import load_dataset
from .publish import push_to_hub
from .raw import RawFormatError, RawRelease
from .sample import sample_dir
from .stats import compute_stats, plot_stats, stats_of

__all__ = [
    "BuildError",
    "BuildOptions",
    "BuildSummary",
    "MPDSBuilder",
    "MPDSConfig",
    "RawFormatError",
    "RawRelease",
    "build",
    "compute_stats",
    "load_dataset",
    "merge",
    "plot_stats",
    "push_to_hub",
    "sample_dir",
    "stats_of",
]
