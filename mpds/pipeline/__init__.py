"""The poster pipeline: `MPDSPosterPipeline`, and the caption and attention pieces it is built from."""

from .attention import LocalizedAttention, LocalizedAttnProcessor
from .caption import LAYOUTS, PosterCaption, RenderedCaption, render_caption
from .pipeline_mpds_poster import MPDSPosterPipeline, MPDSPosterPipelineOutput

__all__ = [
    "LAYOUTS",
    "LocalizedAttention",
    "LocalizedAttnProcessor",
    "MPDSPosterPipeline",
    "MPDSPosterPipelineOutput",
    "PosterCaption",
    "RenderedCaption",
    "render_caption",
]
