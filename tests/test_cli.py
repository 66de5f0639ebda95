import json

import pytest

from mpds.cli import main
from mpds.data import sample_dir


def test_build_then_stats_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "hub"
    assert main(["build", str(sample_dir()), str(out), "--quiet", "--num-proc", "1"]) == 0
    printed = capsys.readouterr().out
    assert "posters: 96 rows written, 7 input rows rejected" in printed
    assert (out / "README.md").is_file() and (out / "rejects.jsonl").is_file()
    assert main(["stats", str(out), "--plot", str(tmp_path / "fig.png")]) == 0
    assert "99 movies" in capsys.readouterr().out and (tmp_path / "fig.png").is_file()


def test_sharded_build_and_merge_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "hub"
    for index in range(2):
        main(["build", str(sample_dir()), str(out), "--quiet", "--shard", f"{index}/2", "--block-size", "20"])
    assert "mpds merge" in capsys.readouterr().out
    assert main(["merge", str(out)]) == 0
    assert "posters: 96 rows written" in capsys.readouterr().out


def test_a_bad_shard_argument_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["build", str(sample_dir()), str(tmp_path), "--shard", "2/2"])
    assert "0 <= i < N" in capsys.readouterr().err


def test_demo_builds_loads_and_plots_the_sample(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "4"]) == 0
    printed = capsys.readouterr().out
    assert "posters/drama (streaming)" in printed and "missing fields" in printed
    assert (tmp_path / "mpds_stats.png").is_file()
    rejects = [json.loads(line) for line in (tmp_path / "mpds-sample" / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == 11
    # Training, export, loading and generation on tiny models.
    assert "actors ['ava_stone', 'liam_tanaka'], ControlNet yes" in printed
    assert "tiny random weights: the poster is noise" in printed and "stable-diffusion-v1-5/stable-diffusion-v1-5" in printed
    from PIL import Image

    for name in ("poster.png", "poster_control.png", "training_curves.png"):
        assert Image.open(tmp_path / name).size[0] > 0
    assert Image.open(tmp_path / "poster.png").size == (64, 64)
    for task in ("lora", "actor", "controlnet"):
        assert len((tmp_path / "runs" / task / "training_log.jsonl").read_text().splitlines()) == 4
