"""mpds: movie-poster generation for the Hugging Face ecosystem.

The public API; heavy modules load on first use.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "MPDSBuilder": "mpds.data",
    "MPDSConfig": "mpds.data",
    "BuildOptions": "mpds.data",
    "BuildError": "mpds.data",
    "RawFormatError": "mpds.data",
    "build_dataset": ("mpds.data", "build"),
    "merge_dataset": ("mpds.data", "merge"),
    "load_dataset": "mpds.data",
    "push_dataset_to_hub": ("mpds.data", "push_to_hub"),
    "sample_dir": "mpds.data",
    "dataset_stats": ("mpds.data", "stats_of"),
    "plot_stats": "mpds.data",
    "DownloadConfig": "mpds.acquisition.download",
    "download_release": "mpds.acquisition.download",
    "caption_posters": "mpds.acquisition.caption",
    "MPDSPosterPipeline": "mpds.pipeline",
    "MPDSPosterPipelineOutput": "mpds.pipeline",
    "PosterCaption": "mpds.pipeline",
    "RenderedCaption": "mpds.pipeline",
    "render_caption": "mpds.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mpds' has no attribute {name!r}")
    module, attribute = _EXPORTS[name] if isinstance(_EXPORTS[name], tuple) else (_EXPORTS[name], name)
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
