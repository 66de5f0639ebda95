"""The small synthetic raw MPDS release shipped inside the package."""

from importlib import resources
from pathlib import Path


def sample_dir() -> Path:
    """The embedded sample: about 100 drawn posters over 16 genres and 20 actors, with the real set's faults.

    It was made by `python -m mpds.testing.synthetic mpds/sample` and is read like any raw release.
    """
    return Path(str(resources.files("mpds").joinpath("sample")))
