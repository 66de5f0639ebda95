"""`MPDSBuilder`: a `datasets` builder that reads a raw MPDS release directly.

    builder = MPDSBuilder(config_name="posters", data_dir="path/to/raw")
    sci_fi = builder.as_streaming_dataset(split="sci_fi")

The published dataset is the hub layout that `mpds build` writes (Parquet shards and a card);
this builder is for working on raw files without building first.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets

from .features import CONFIG_NAMES, FEATURES
from .raw import ALL_SPLIT, MIN_IMAGE_BYTES, RawRelease, Reject

_DESCRIPTION = {
    "posters": "Movie posters with their vision-perceptive, synopsis and merged prompts and their caption.",
    "actors": "Photos of cast members and the ids of the movies they play in.",
    "meta": "The text columns of every movie.",
}


@dataclass
class MPDSConfig(datasets.BuilderConfig):
    """A config of MPDS read from raw files (`data_dir` is the raw release)."""

    posters_dir: str = "posters"
    actors_dir: str = "actors"
    min_image_bytes: int = MIN_IMAGE_BYTES


class MPDSBuilder(datasets.GeneratorBasedBuilder):
    """MPDS from a raw release: configs `posters` (splits `train` and one per genre), `actors` and `meta`."""

    BUILDER_CONFIG_CLASS = MPDSConfig
    BUILDER_CONFIGS = [MPDSConfig(name=name, description=_DESCRIPTION[name]) for name in CONFIG_NAMES]
    DEFAULT_CONFIG_NAME = "posters"
    DEFAULT_WRITER_BATCH_SIZE = 100

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION[self.config.name],
            features=FEATURES[self.config.name],
            license="cc-by-nc-sa-4.0",
        )

    def _release(self) -> RawRelease:
        if not self.config.data_dir:
            raise ValueError("MPDSBuilder needs data_dir=<raw MPDS release folder>")
        return RawRelease(self.config.data_dir, posters_dir=self.config.posters_dir,
                          actors_dir=self.config.actors_dir, min_image_bytes=self.config.min_image_bytes)

    def _split_generators(self, dl_manager):
        release = self._release()
        names = [ALL_SPLIT]
        if self.config.name == "posters":
            names += release.scan().genre_splits
        return [datasets.SplitGenerator(name=name, gen_kwargs={"split": name}) for name in names]

    def _generate_examples(self, split: str):
        release = self._release()
        scan = release.scan()
        if self.config.name == "posters":
            records = release.poster_records(scan, release.visual_prompts())
            for row, example, splits in records:
                if splits is not None and split in splits:
                    yield example["id"], example
        else:
            records = release.meta_records(scan) if self.config.name == "meta" else release.actor_records(scan)
            for _, example in records:
                if not isinstance(example, Reject):
                    yield example["id"], example
