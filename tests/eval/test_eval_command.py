"""`mpds eval` end to end on tiny pipelines: posters, metrics, report files that agree with report.json."""

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from mpds.commands import eval as eval_command
from mpds.data import build, sample_dir
from mpds.eval.protocol import PromptRecord, generate_posters, prompts_from_dataset
from mpds.eval.report import COLUMNS, format_value
from mpds.testing.components import build_poster_pipeline
from mpds.testing.eval_models import save_clip

from .conftest import tesseract_missing

SIZE = ["--height", "64", "--width", "64", "--steps", "2", "--device", "cpu"]


def parse(argv):
    parser = argparse.ArgumentParser(prog="mpds")
    eval_command.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["eval", *argv])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval-models")
    build_poster_pipeline(seed=0).save_pretrained(folder / "ours")
    save_clip(folder / "clip", seed=0)
    save_clip(folder / "pickscore", seed=1)
    return folder


@pytest.fixture
def prompts_file(tmp_path):
    photos = [str(p) for p in sorted((sample_dir() / "actors").glob("107_*.jpg"))]
    lines = [
        {"prompt": "a noir movie poster, title at the bottom", "caption": "NIGHT\nANNA LEE", "actor_photos": photos},
        {"prompt": "a space opera poster", "caption": "STARS"},
    ]
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    return path


def markdown_rows(text):
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0]]
    return header, {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows[1:]}


def test_eval_generates_posters_and_writes_a_report_that_agrees_with_its_json(models, prompts_file, tmp_path):
    # A second model given as a folder of posters it already generated for the same prompts.
    records = [PromptRecord("a noir movie poster, title at the bottom", "NIGHT\nANNA LEE", 0, key="0000"),
               PromptRecord("a space opera poster", "STARS", 1, key="0001")]
    generate_posters(build_poster_pipeline(seed=3), records, tmp_path / "sd15", num_inference_steps=2,
                     height=64, width=64, device="cpu")
    out = tmp_path / "report"
    args = parse([
        "--models", f"ours={models / 'ours'}", f"sd15={tmp_path / 'sd15'}", "--prompts", str(prompts_file),
        "--reference", str(sample_dir() / "posters"), "--out", str(out), "--fid-features", str(models / "clip"),
        "--clip-model", str(models / "clip"), "--pickscore-model", str(models / "pickscore"),
        "--likeness-model", str(models / "clip"), "--ocr", "none" if tesseract_missing() else "tesseract", *SIZE,
    ])
    assert args.func(args) == 0

    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 2 and set(report["models"]) == {"ours", "sd15"}
    ours = report["models"]["ours"]
    for metric in ("clipscore", "clip_cosine", "fid", "kid", "pickscore_win_rate", "actor_likeness"):
        assert metric in ours
    assert ours["pickscore_win_rate"] + report["models"]["sd15"]["pickscore_win_rate"] == pytest.approx(1.0)
    assert report["settings"]["fid"]["n"] == 2 and report["settings"]["fid"]["n_reference"] > 90
    assert report["settings"]["actor_likeness"]["n"] == 1  # only the first prompt has actor photos
    if not tesseract_missing():
        assert "ocr_word_accuracy" in ours and report["settings"]["ocr"]["n"] == 2

    # The Markdown table starts with the paper's Table 1 columns and shows report.json's values.
    header, rows = markdown_rows((out / "report.md").read_text())
    assert header[:4] == ["Method", "CLIP-score↑", "FID↓", "PickScore↑"]
    titles = {title: key for key, title, *_ in COLUMNS}
    for name, cells in rows.items():
        for title, cell in zip(header[1:], cells):
            assert cell == format_value(titles[title], report["models"][name].get(titles[title]))

    # One chart per metric in the report, and a contact sheet with a column per model.
    for metric in ours:
        if metric in titles.values():
            assert report["files"]["charts"][metric] == f"chart_{metric}.png"
            assert (out / f"chart_{metric}.png").is_file()
    sheet = Image.open(out / report["files"]["contact_sheet"])
    assert sheet.width > 2 * 160

    # Fixed seeds: the generated posters are those of the pipeline called with each prompt's seed.
    again = generate_posters(build_poster_pipeline(seed=0), records[:1], tmp_path / "again",
                             num_inference_steps=2, height=64, width=64, device="cpu")
    assert np.array_equal(np.asarray(Image.open(again[0])), np.asarray(Image.open(out / "posters" / "ours" / "0000.png")))


def test_eval_reports_bad_arguments_as_errors(models, prompts_file, tmp_path, capsys):
    args = parse(["--models", "ours", "--prompts", str(prompts_file), "--out", str(tmp_path / "r"), *SIZE])
    assert args.func(args) == 2
    assert "NAME=DIR_OR_REPO" in capsys.readouterr().err


def test_prompts_from_an_mpds_split(tmp_path):
    hub = tmp_path / "hub"
    build(sample_dir(), hub, progress=False)
    records, reference = prompts_from_dataset(hub, split="drama", n=3, seed=10)
    assert len(records) == len(reference) == 3
    assert [record.seed for record in records] == [10, 11, 12]
    assert records[0].caption.splitlines()[0] in records[0].prompt  # the title is both asked for and to be shown
    assert all(isinstance(image, Image.Image) for image in reference)
    assert any(record.actor_photos for record in records)


def test_eval_draws_prompts_and_reference_from_a_dataset_split(models, tmp_path):
    hub = tmp_path / "hub"
    build(sample_dir(), hub, progress=False)
    out = tmp_path / "report"
    args = parse([
        "--models", f"ours={models / 'ours'}", "--from-dataset", str(hub), "--split", "drama", "-n", "2",
        "--out", str(out), "--fid-features", str(models / "clip"), "--clip-model", str(models / "clip"),
        "--likeness-model", str(models / "clip"), "--ocr", "none", *SIZE,
    ])
    assert args.func(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 2 and report["settings"]["fid"]["n_reference"] == 2
    assert "pickscore_win_rate" not in report["models"]["ours"]  # a win rate needs a second model
    assert len(list((out / "posters" / "ours").glob("*.png"))) == 2
