"""Checkpoints resume exactly; the latent cache changes nothing but speed; the stream's samples are reproducible."""

import itertools

import pytest

from mpds.training import parse_args
from mpds.training.data import poster_epochs, poster_stream


@pytest.mark.parametrize("task", ["lora", "controlnet"])
def test_resume_from_a_checkpoint_repeats_the_uninterrupted_losses(task, train, tiny_args, tmp_path):
    # The interrupted run stops at step 3 by asking for 3 steps: a constant learning rate keeps its schedule the same.
    common = ["--max_train_steps", "6", "--checkpointing_steps", "3", "--max_train_samples", "10"]
    uninterrupted = train.main(tiny_args(task, *common, output_dir=tmp_path / "whole"))

    interrupted_dir = tmp_path / "interrupted"
    first = train.main(tiny_args(task, *common, output_dir=interrupted_dir, *["--max_train_steps", "3"]))
    assert (interrupted_dir / "checkpoint-3").is_dir()
    second = train.main(tiny_args(task, *common, "--resume_from_checkpoint", "latest", output_dir=interrupted_dir))

    assert len(uninterrupted["losses"]) == 6 and len(second["losses"]) == 3
    assert first["losses"] == uninterrupted["losses"][:3]
    assert second["losses"] == uninterrupted["losses"][3:]
    assert second["final_loss"] == uninterrupted["final_loss"]


def test_the_latent_cache_gives_the_same_losses_and_is_read_from_the_second_epoch(train, tiny_args, tmp_path):
    # 4 posters in batches of 2: steps 3 and 4 are the second epoch.
    common = ["--max_train_samples", "4", "--max_train_steps", "4"]
    plain = train.main(tiny_args("lora", *common, output_dir=tmp_path / "plain"))
    cache = tmp_path / "cache"
    cached = train.main(tiny_args("lora", *common, "--cache-latents", str(cache), output_dir=tmp_path / "cached"))
    assert cached["losses"] == plain["losses"]
    entries = list(cache.glob("*/*.safetensors"))
    assert len(entries) == 4
    modified = {entry: entry.stat().st_mtime_ns for entry in entries}
    again = train.main(tiny_args("lora", *common, "--cache-latents", str(cache), output_dir=tmp_path / "again"))
    assert again["losses"] == plain["losses"]
    assert {entry: entry.stat().st_mtime_ns for entry in entries} == modified  # read, never rewritten


def _poster_ids(tiny_args, *flags):
    args = parse_args(tiny_args("lora", *flags))
    read_epoch = poster_epochs(poster_stream(args), args.seed, args.shuffle_buffer_size, args.max_train_samples)
    return [example["id"] for example in read_epoch(0, 0)]


def test_max_train_samples_picks_the_same_posters_for_the_same_seed(tiny_args):
    first = _poster_ids(tiny_args, "--max_train_samples", "10", "--seed", "3")
    assert len(first) == 10 and len(set(first)) == 10
    assert _poster_ids(tiny_args, "--max_train_samples", "10", "--seed", "3") == first
    assert set(_poster_ids(tiny_args, "--max_train_samples", "10", "--seed", "4")) != set(first)


def test_genres_pick_their_splits_and_read_a_poster_of_several_once(tiny_args, dataset):
    import datasets

    drama = {row["id"] for row in datasets.load_dataset(dataset, "posters", split="drama")}
    documentary = {row["id"] for row in datasets.load_dataset(dataset, "posters", split="documentary")}
    assert drama & documentary, "the sample has documentary dramas"
    ids = _poster_ids(tiny_args, "--genres", "Drama,documentary")
    assert len(ids) == len(set(ids)) and set(ids) == drama | documentary
