"""`mpds generate`: writes the poster and, beside it, the control image."""

import argparse

import numpy as np
import pytest
from PIL import Image

from mpds.commands import generate
from mpds.testing.components import add_random_lora


def parse(argv):
    parser = argparse.ArgumentParser(prog="mpds")
    generate.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["generate", *argv])


@pytest.fixture
def bundle(pipe, tmp_path):
    add_random_lora(pipe)
    pipe.save_pretrained(tmp_path / "bundle")
    return str(tmp_path / "bundle")


def common(bundle, out):
    return ["--model", bundle, "--out", str(out), "--height", "32", "--width", "32", "--steps", "2", "--device", "cpu"]


def test_generate_writes_poster_and_control_image(bundle, tmp_path):
    out = tmp_path / "out" / "poster.png"
    argv = ["a movie poster of {actor}", "--title", "NIGHT SHIFT", "--credits", "ANNA LEE",
            "--actor", "bob", "--scales", "5", "3", "2", "--seed", "7", *common(bundle, out)]
    args = parse(argv)
    assert args.func(args) == 0
    poster, control = Image.open(out), Image.open(tmp_path / "out" / "poster_control.png")
    assert poster.size == (32, 32) and control.size == (32, 32)
    assert np.asarray(control).max() == 255

    again = tmp_path / "again.png"
    args = parse(argv[:-len(common(bundle, out))] + common(bundle, again))
    assert args.func(args) == 0
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(poster))


def test_generate_without_caption_writes_no_control_image(bundle, tmp_path):
    out = tmp_path / "plain.png"
    args = parse(["a movie poster", "--seed", "0", *common(bundle, out)])
    assert args.func(args) == 0
    assert out.exists() and not (tmp_path / "plain_control.png").exists()


def test_generate_reports_bad_input_as_an_error(bundle, tmp_path, capsys):
    args = parse(["a movie poster of {actor}", "--actor", "alice", *common(bundle, tmp_path / "x.png")])
    assert args.func(args) == 2
    assert "Unknown actor 'alice'; known actors: ['bob']" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
