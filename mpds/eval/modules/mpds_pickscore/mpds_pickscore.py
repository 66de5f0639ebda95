"""`evaluate` module for mpds' PickScore win rates: `evaluate.load(mpds.eval.module_path("pickscore"))`."""

import datasets
import evaluate

from mpds.eval.pickscore import DEFAULT_PICKSCORE_MODEL, pickscore_win_rates

_DESCRIPTION = "PickScore win rate of each system against each other system, on the same prompts."
_KWARGS = """
Args:
    predictions: images (PIL images or paths).
    references: the prompt of each image.
    systems: the name of the model that made each image; every system must cover the same prompts in order.
    model: PickScore model id or folder (default yuvalkirstain/PickScore_v1).
Returns:
    win_rate (per system), pairwise, mean_score, n.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class MPDSPickScore(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Kirstain et al. 2023, Pick-a-Pic.",
            inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": datasets.Image(), "references": datasets.Value("string"),
                "systems": datasets.Value("string"),
            }),
        )

    def _compute(self, predictions, references, systems, model=DEFAULT_PICKSCORE_MODEL, batch_size=16):
        images, prompts = {}, {}
        for image, prompt, system in zip(predictions, references, systems):
            images.setdefault(system, []).append(image)
            prompts.setdefault(system, []).append(prompt)
        first = next(iter(prompts.values()))
        if any(other != first for other in prompts.values()):
            raise ValueError("every system must be given the same prompts in the same order.")
        return pickscore_win_rates(images, first, model, batch_size=batch_size)
