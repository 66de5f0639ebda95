"""`evaluate` module for mpds' OCR legibility: `evaluate.load(mpds.eval.module_path("text_legibility"))`."""

import datasets
import evaluate

from mpds.eval.ocr import TesseractEngine, text_legibility

_DESCRIPTION = "OCR the posters and compare with the requested captions: word and sentence accuracy, edit distance."
_KWARGS = """
Args:
    predictions: posters (PIL images or paths).
    references: the caption each poster should show.
    language: tesseract language (default "eng").
Returns:
    word_accuracy, sentence_accuracy, normalized_edit_distance, n.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class MPDSTextLegibility(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Image(), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, language="eng"):
        result = text_legibility(predictions, references, TesseractEngine(language=language))
        return {key: result[key] for key in ("word_accuracy", "sentence_accuracy", "normalized_edit_distance", "n")}
