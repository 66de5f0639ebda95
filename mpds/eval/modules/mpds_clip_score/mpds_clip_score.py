"""`evaluate` module for mpds' CLIP score: `evaluate.load(mpds.eval.module_path("clip_score"))`."""

import datasets
import evaluate

from mpds.eval.clip_score import CLIPSCORE_WEIGHT, DEFAULT_CLIP_MODEL, clip_score

_DESCRIPTION = "CLIP similarity of images and prompts: the raw cosine and CLIPScore (w * max(cos, 0), w = 2.5)."
_KWARGS = """
Args:
    predictions: images (PIL images or paths).
    references: the prompt of each image.
    model: CLIP model id or folder (default openai/clip-vit-large-patch14).
    weight: CLIPScore's w (default 2.5).
Returns:
    clip_cosine, clipscore, n.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class MPDSClipScore(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Hessel et al. 2021, CLIPScore; Radford et al. 2021, CLIP.",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Image(), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, model=DEFAULT_CLIP_MODEL, weight=CLIPSCORE_WEIGHT, batch_size=16):
        result = clip_score(predictions, references, model, weight=weight, batch_size=batch_size)
        return {key: result[key] for key in ("clip_cosine", "clipscore", "n")}
