"""Fixtures of the evaluation tests: tiny random CLIP/PickScore models built in the session, posters drawn locally."""

import shutil

import numpy as np
import pytest
from PIL import Image

from mpds.data import sample_dir
from mpds.testing.eval_models import build_clip, save_clip


@pytest.fixture(scope="session")
def clip():
    return build_clip(seed=0)


@pytest.fixture(scope="session")
def pickscore_model():
    return build_clip(seed=1)


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory):
    return save_clip(tmp_path_factory.mktemp("models") / "tiny-clip", seed=0)


@pytest.fixture(scope="session")
def random_images():
    generator = np.random.default_rng(0)
    return [Image.fromarray(generator.integers(0, 256, (48, 40, 3), dtype=np.uint8)) for _ in range(6)]


@pytest.fixture(scope="session")
def sample_posters():
    """The embedded sample's poster files that decode (the sample has deliberately broken ones)."""
    from mpds.eval.protocol import image_folder, readable_images

    return readable_images(image_folder(sample_dir() / "posters"))[0]


def tesseract_missing() -> bool:
    return shutil.which("tesseract") is None


needs_tesseract = pytest.mark.skipif(
    tesseract_missing(), reason="the tesseract binary is not installed (dev.py installs Debian's tesseract-ocr)"
)
