import datasets
import pytest

import mpds
from mpds.data import MPDSBuilder


def test_builder_streams_a_genre_split_straight_from_raw_files(sample, built):
    streamed = MPDSBuilder(config_name="posters", data_dir=str(sample)).as_streaming_dataset(split="sci_fi")
    rows = list(streamed)
    built_ids = sorted(datasets.load_dataset(str(built[0]), "posters", split="sci_fi")["id"])
    assert sorted(row["id"] for row in rows) == built_ids
    assert rows[0]["image"].size == (200, 300) and rows[0]["prompt"]


def test_builder_declares_train_and_one_split_per_genre(sample):
    builder = MPDSBuilder(config_name="posters", data_dir=str(sample))
    splits = [generator.name for generator in builder._split_generators(None)]
    assert splits[0] == "train" and {"drama", "sci_fi", "film_noir", "reality_tv"} <= set(splits)


@pytest.mark.parametrize("config, rows", [("actors", 20), ("meta", 99)])
def test_builder_actors_and_meta_configs(sample, config, rows):
    streamed = MPDSBuilder(config_name=config, data_dir=str(sample)).as_streaming_dataset(split="train")
    examples = list(streamed)
    assert len(examples) == rows
    if config == "actors":
        assert all(3 <= len(example["images"]) <= 5 for example in examples)
    else:
        assert set(examples[0]) == {"id", "title", "genres", "actors", "synopsis", "movie_url", "poster_url"}


def test_builder_without_data_dir_says_what_it_needs():
    with pytest.raises(ValueError, match="data_dir"):
        MPDSBuilder(config_name="posters").as_streaming_dataset(split="train")


def test_mpds_load_dataset_reads_a_local_build_and_the_env_default(built, monkeypatch):
    out, _ = built
    drama = mpds.load_dataset("posters", split="drama", path=str(out))
    assert len(drama) == 15
    monkeypatch.setenv("MPDS_DATASET", str(out))
    assert len(mpds.load_dataset("meta", split="train")) == 99


def test_mpds_load_dataset_names_the_configs_on_a_typo(built):
    with pytest.raises(ValueError, match="posters, actors, meta; got 'poster'"):
        mpds.load_dataset("poster", path=str(built[0]))
