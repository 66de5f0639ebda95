import json
import shutil

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import Image, List, Value

from mpds.data import BuildError, BuildOptions, build, merge
from mpds.data import hub_layout

from .conftest import read_rejects

GOOD_POSTERS = 96


def _card_yaml(out):
    text = (out / "README.md").read_text()
    return yaml.safe_load(text.split("---")[1])


def _ids(dataset):
    return sorted(row["id"] for row in dataset)


def test_posters_stream_by_genre_split_offline(built):
    out, _ = built
    drama = datasets.load_dataset(str(out), "posters", split="drama", streaming=True)
    rows = list(drama)
    assert rows and all("Drama" in row["genres"] for row in rows)
    assert rows[0]["image"].size == (200, 300)
    assert isinstance(rows[0]["actors"], list) and set(rows[0]["actors"][0]) == {"id", "name", "url"}


def test_train_holds_every_poster_once_and_each_genre_split_its_posters(built):
    out, summary = built
    posters = datasets.load_dataset(str(out), "posters")
    train_ids = _ids(posters["train"].select_columns(["id"]))
    assert len(train_ids) == len(set(train_ids)) == GOOD_POSTERS == summary.written("posters")
    genres = {row["id"]: row["genres"] for row in posters["train"].select_columns(["id", "genres"])}
    for split, dataset in posters.items():
        if split != "train":
            expected = sorted(i for i, names in genres.items() if split in {g.lower().replace("-", "_") for g in names})
            assert _ids(dataset.select_columns(["id"])) == expected, split
    assert {"sci_fi", "film_noir", "reality_tv", "talk_show", "game_show"} <= set(posters)


def test_the_card_declares_every_config_split_file_feature_and_size(built):
    out, _ = built
    card = _card_yaml(out)
    configs = {config["config_name"]: config for config in card["configs"]}
    assert set(configs) == {"posters", "actors", "meta"} and configs["posters"].get("default") is True
    infos = {info["config_name"]: info for info in card["dataset_info"]}
    for name, config in configs.items():
        split_sizes = {split["name"]: split["num_examples"] for split in infos[name]["splits"]}
        assert {entry["split"] for entry in config["data_files"]} == set(split_sizes)
        for entry in config["data_files"]:
            assert entry["path"] and all((out / path).is_file() for path in entry["path"])
            loaded = datasets.load_dataset(str(out), name, split=entry["split"])
            assert len(loaded) == split_sizes[entry["split"]]
    features = datasets.Features._from_yaml_list(infos["posters"]["features"])
    assert features["image"] == Image() and features["actors"] == List({"id": Value("int64"), "name": Value("string"), "url": Value("string")})


def test_images_are_embedded_as_bytes_never_paths(built):
    out, _ = built
    table = pq.read_table(next((out / "data" / "posters" / "train").glob("*.parquet")), columns=["image"])
    images = table.column("image").to_pylist()
    assert all(image["bytes"] and image["path"] is None for image in images)


def test_image_bytes_are_stored_uncompressed_and_text_with_snappy(built):
    out, _ = built
    metadata = pq.ParquetFile(next((out / "data" / "posters" / "train").glob("*.parquet"))).metadata
    codecs = {metadata.row_group(0).column(i).path_in_schema: metadata.row_group(0).column(i).compression
              for i in range(metadata.num_columns)}
    assert codecs.pop("image.bytes") == "UNCOMPRESSED"
    assert set(codecs.values()) == {"SNAPPY"}


def test_every_input_row_is_written_or_in_rejects_jsonl(built, sample):
    out, summary = built
    rejects = read_rejects(out)
    assert all({"config", "source", "row", "id", "reason", "detail"} <= set(item) for item in rejects)
    meta_rows = sum(1 for _ in open(sample / "meta.csv")) - 1
    for config in ("posters", "meta"):
        rejected_meta_rows = {item["row"] for item in rejects if item["config"] == config and item["source"] == "meta.csv"}
        assert summary.written(config) + len(rejected_meta_rows) == meta_rows
    assert sum(summary.rejected["posters"].values()) == 7  # 6 meta.csv rows and 1 posters.csv row
    assert "posters: 96 rows written, 7 input rows rejected" in str(summary)


def test_webdataset_shards_load_with_declared_features(built_webdataset):
    out = built_webdataset
    assert list((out / "data" / "posters" / "train").glob("*.tar"))
    sci_fi = datasets.load_dataset(str(out), "posters", split="sci_fi", streaming=True)
    assert sci_fi.features["json"]["actors"] == List({"id": Value("int64"), "name": Value("string"), "url": Value("string")})
    rows = list(sci_fi)
    assert rows and all("Sci-Fi" in row["json"]["genres"] for row in rows)
    assert rows[0]["jpg"].size == (200, 300)
    # Synopsis is null on some rows: with guessed types a null first sample would break the column.
    train = datasets.load_dataset(str(out), "posters", split="train")
    assert len(train) == GOOD_POSTERS
    assert any(row["synopsis"] is None for row in train["json"])
    actors = datasets.load_dataset(str(out), "actors", split="train", streaming=True)
    first = next(iter(actors))
    assert first["jpg"] is not None and first["json"]["photo"] == 0 and first["json"]["movie_ids"]


def test_webdataset_shards_read_with_webdataset_pipelines(built_webdataset):
    import webdataset

    shard = next((built_webdataset / "data" / "posters" / "train").glob("*.tar"))
    samples = list(webdataset.WebDataset(str(shard), shardshuffle=False).decode("pil").to_tuple("jpg", "json"))
    assert len(samples) == GOOD_POSTERS
    image, fields = samples[0]
    assert image.size == (200, 300) and fields["caption"].startswith(fields["title"])


def _rows_by_split(out, config="posters"):
    loaded = datasets.load_dataset(str(out), config)
    return {split: _ids(dataset.select_columns(["id"])) for split, dataset in loaded.items()}


def test_parallel_build_writes_the_same_rows(sample, built, tmp_path):
    out = tmp_path / "hub"
    build(sample, out, BuildOptions(num_proc=2, block_size=16), progress=False)
    assert _rows_by_split(out) == _rows_by_split(built[0])
    assert len(list((out / "data" / "posters" / "train").glob("*.parquet"))) == 2  # one part per worker


def test_small_shard_size_rotates_parts_without_losing_rows(sample, built, tmp_path):
    out = tmp_path / "hub"
    build(sample, out, BuildOptions(block_size=10, max_shard_size=1), progress=False)
    assert len(list((out / ".mpds" / "parts").glob("posters-*.json"))) == 11  # 102 rows in blocks of 10
    # The last block holds only the two rejected rows (repeated and invalid id): no train shard.
    assert len(list((out / "data" / "posters" / "train").glob("*.parquet"))) == 10
    assert _rows_by_split(out) == _rows_by_split(built[0])


class _Interrupt(BaseException):
    pass


@pytest.mark.parametrize("where", ["before the manifest", "while writing a part"])
def test_an_interrupted_build_resumes_without_duplicates_or_gaps(sample, built, tmp_path, monkeypatch, where):
    out = tmp_path / "hub"
    options = BuildOptions(block_size=10, max_shard_size=1)
    commits = {"count": 0}
    if where == "before the manifest":
        original = hub_layout._write_json_atomic

        def write_then_stop(path, value):
            if path.parent.name == "parts":
                commits["count"] += 1
                if commits["count"] == 4:  # shards renamed into data/, manifest not written
                    raise _Interrupt
            original(path, value)

        monkeypatch.setattr(hub_layout, "_write_json_atomic", write_then_stop)
    else:
        original = hub_layout._ParquetShard.write

        def write_then_stop(self, rows, size):
            commits["count"] += 1
            if commits["count"] == 40:  # mid-build: some of a part's split shards are written, not all
                raise _Interrupt
            original(self, rows, size)

        monkeypatch.setattr(hub_layout._ParquetShard, "write", write_then_stop)
    with pytest.raises(_Interrupt):
        build(sample, out, options, progress=False)
    assert not (out / "README.md").exists()
    monkeypatch.undo()
    build(sample, out, options, progress=False)
    assert not (out / ".mpds" / "tmp").exists()
    assert _rows_by_split(out) == _rows_by_split(built[0])
    assert len(read_rejects(out)) == len(read_rejects(built[0]))


def test_resume_with_other_settings_is_refused(sample, tmp_path):
    out = tmp_path / "hub"
    build(sample, out, BuildOptions(block_size=10), progress=False)
    with pytest.raises(BuildError, match="other settings.*block_size|settings"):
        build(sample, out, BuildOptions(block_size=20), progress=False)


def test_a_folder_with_foreign_data_is_refused(sample, tmp_path):
    (tmp_path / "hub" / "data").mkdir(parents=True)
    with pytest.raises(BuildError, match="empty folder"):
        build(sample, tmp_path / "hub", progress=False)


def test_shards_built_apart_merge_into_the_same_dataset(sample, built, tmp_path):
    options = dict(block_size=10)
    for index in range(3):
        assert build(sample, tmp_path / f"machine{index}", BuildOptions(shard=(index, 3), **options), progress=False) is None
    merged = tmp_path / "merged"
    shutil.copytree(tmp_path / "machine0", merged)
    with pytest.raises(BuildError, match=r"incomplete: poster blocks \[1, 2, 4"):
        merge(merged)
    for index in (1, 2):
        shutil.copytree(tmp_path / f"machine{index}", merged, dirs_exist_ok=True)
    summary = merge(merged)
    assert summary.written("posters") == GOOD_POSTERS
    assert _rows_by_split(merged) == _rows_by_split(built[0])
    assert _rows_by_split(merged, "actors") == _rows_by_split(built[0], "actors")


def test_merge_of_a_folder_without_a_build_is_refused(tmp_path):
    with pytest.raises(BuildError, match="holds no mpds build"):
        merge(tmp_path)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="format must be one of"):
        BuildOptions(format="zip")
    with pytest.raises(ValueError, match="shard must be"):
        BuildOptions(shard=(3, 3))


def test_build_state_is_kept_apart_from_the_published_files(built):
    out, _ = built
    state = json.loads((out / ".mpds" / "build.json").read_text())
    assert state["num_rows"] == 102 and state["settings"]["format"] == "parquet"


KILL_AT_SIXTH_PART = """
import os, signal, sys
from mpds.data import BuildOptions, build, hub_layout

original = hub_layout._write_json_atomic
parts = []

def write_then_die(path, value):
    if path.parent.name == "parts":
        parts.append(path)
        if len(parts) == 6:  # meta, actors, posters.csv, 2 poster parts done; the 3rd is renamed, unrecorded
            os.kill(os.getpid(), signal.SIGKILL)
    original(path, value)

hub_layout._write_json_atomic = write_then_die
build(sys.argv[1], sys.argv[2], BuildOptions(block_size=10, max_shard_size=1), progress=False)
"""


def test_a_build_killed_with_sigkill_resumes_to_the_same_dataset(sample, built, tmp_path):
    import signal
    import subprocess
    import sys

    out = tmp_path / "hub"
    killed = subprocess.run([sys.executable, "-c", KILL_AT_SIXTH_PART, str(sample), str(out)])
    assert killed.returncode == -signal.SIGKILL
    assert len(list((out / ".mpds" / "parts").glob("*.json"))) == 5 and not (out / "README.md").exists()
    # The killed part's shard reached data/ without a manifest: resume must not count it twice.
    assert len(list((out / "data" / "posters" / "train").glob("*.parquet"))) == 3
    build(sample, out, BuildOptions(block_size=10, max_shard_size=1), progress=False)
    assert _rows_by_split(out) == _rows_by_split(built[0])
    assert _rows_by_split(out, "actors") == _rows_by_split(built[0], "actors")
    assert len(read_rejects(out)) == len(read_rejects(built[0]))
