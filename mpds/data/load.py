"""`mpds.load_dataset`: `datasets.load_dataset` with the published MPDS as the default path."""

from __future__ import annotations

import os
from typing import Optional

import datasets

from ..loading_script.card import DEFAULT_REPO_ID

REPO_ENV = "MPDS_DATASET"


def default_path() -> str:
    """The dataset `mpds.load_dataset` reads by default: `$MPDS_DATASET`, else the published repo."""
    return os.environ.get(REPO_ENV) or DEFAULT_REPO_ID


def load_dataset(name: str = "posters", split: Optional[str] = None, *, path: Optional[str] = None, **kwargs):
    """Load a config of MPDS; every keyword goes on to `datasets.load_dataset`.

    Args:
        name: "posters", "actors" or "meta".
        split: "train", a genre split such as "drama" or "sci_fi" (posters), or None for all.
        path: a Hub repo id or a local hub-layout folder (`mpds build` output); defaults to
            `$MPDS_DATASET`, else the published MPDS repo.

    Raises:
        ValueError: for an unknown config name.

    Example:
        >>> import mpds
        >>> drama = mpds.load_dataset("posters", split="drama", streaming=True)  # doctest: +SKIP
        >>> next(iter(drama))["caption"]  # doctest: +SKIP
    """
    from .features import CONFIG_NAMES

    if name not in CONFIG_NAMES:
        raise ValueError(f"MPDS has the configs {', '.join(CONFIG_NAMES)}; got {name!r}")
    return datasets.load_dataset(path or default_path(), name, split=split, **kwargs)
