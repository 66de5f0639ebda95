"""Evaluation: the MPDS paper's Table 1 protocol (CLIP score, FID, PickScore) plus text legibility and actor likeness.

Each metric is a plain function here and an `evaluate` module in the package:

    >>> import evaluate, mpds.eval
    >>> clip = evaluate.load(mpds.eval.module_path("clip_score"))  # doctest: +SKIP
"""

from pathlib import Path

from .clip_score import CLIPSCORE_WEIGHT, DEFAULT_CLIP_MODEL, clip_score
from .fid import CLIPFeatures, FeatureExtractorUnavailable, InceptionFeatures, fid, frechet_distance, kernel_inception_distance
from .likeness import DEFAULT_LIKENESS_MODEL, actor_likeness
from .models import best_device, load_clip
from .ocr import OCRUnavailable, TesseractEngine, edit_distance, legibility_of, text_legibility
from .pickscore import DEFAULT_PICKSCORE_MODEL, pick_scores, pickscore_win_rates, win_rates

MODULES = ("clip_score", "fid", "pickscore", "text_legibility", "actor_likeness")


def module_path(name: str) -> str:
    """The folder of the `evaluate` module for metric `name` (one of `MODULES`), for `evaluate.load`.

    Raises:
        ValueError: for an unknown metric.
    """
    if name not in MODULES:
        raise ValueError(f"mpds ships the evaluate modules {', '.join(MODULES)}; got {name!r}.")
    return str(Path(__file__).parent / "modules" / f"mpds_{name}")


__all__ = [
    "CLIPFeatures",
    "CLIPSCORE_WEIGHT",
    "DEFAULT_CLIP_MODEL",
    "DEFAULT_LIKENESS_MODEL",
    "DEFAULT_PICKSCORE_MODEL",
    "FeatureExtractorUnavailable",
    "InceptionFeatures",
    "MODULES",
    "OCRUnavailable",
    "TesseractEngine",
    "actor_likeness",
    "best_device",
    "clip_score",
    "edit_distance",
    "fid",
    "frechet_distance",
    "kernel_inception_distance",
    "legibility_of",
    "load_clip",
    "module_path",
    "pick_scores",
    "pickscore_win_rates",
    "text_legibility",
    "win_rates",
]
