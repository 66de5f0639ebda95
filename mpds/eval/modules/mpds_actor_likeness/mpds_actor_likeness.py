"""`evaluate` module for mpds' actor likeness: `evaluate.load(mpds.eval.module_path("actor_likeness"))`."""

import datasets
import evaluate

from mpds.eval.likeness import DEFAULT_LIKENESS_MODEL, actor_likeness

_DESCRIPTION = "Cosine similarity of each poster to the mean image embedding of its actor's reference photos."
_KWARGS = """
Args:
    predictions: posters (PIL images or paths).
    references: for each poster, a list of reference photos of the actor.
    model: image encoder (CLIP) id or folder (default openai/clip-vit-large-patch14).
Returns:
    actor_likeness, n.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class MPDSActorLikeness(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": datasets.Image(), "references": datasets.Sequence(datasets.Image()),
            }),
        )

    def _compute(self, predictions, references, model=DEFAULT_LIKENESS_MODEL, batch_size=16):
        result = actor_likeness(predictions, references, model, batch_size=batch_size)
        return {key: result[key] for key in ("actor_likeness", "n")}
