"""`mpds caption` with a tiny random BLIP-2 built in the test session (no download)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mpds.acquisition.caption import caption_posters, degenerate_reason
from mpds.commands import caption as caption_command
from mpds.testing.synthetic import make_raw_release

WORDS = ("a movie poster of with the red blue green man woman city night title large white letters cast bottom "
         "background circle stripes sky car gun house").split()
# Three distinct new words per poster: a random model then never repeats itself, so its captions are written.
VARIED = {"min_new_tokens": 3, "max_new_tokens": 3, "no_repeat_ngram_size": 1}


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory) -> Path:
    """A random BLIP-2 (ViT, Q-Former, OPT: one layer each, width 32) and its processor, saved to a folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, PreTrainedTokenizerFast
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    vocab = {token: index for index, token in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="</s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>")
    processor = Blip2Processor(BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer, num_query_tokens=4)
    config = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=8),
        qformer_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                            encoder_hidden_size=32, vocab_size=len(tokenizer)),
        text_config=dict(model_type="opt", vocab_size=len(tokenizer), hidden_size=32, ffn_dim=37, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=32,
                         pad_token_id=0, bos_token_id=1, eos_token_id=1),
        num_query_tokens=4,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config).eval()
    folder = tmp_path_factory.mktemp("tiny-blip2")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture
def loaded(tiny_blip2):
    """`(model, processor)` loaded from the tiny model's folder."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(tiny_blip2).eval(), AutoProcessor.from_pretrained(tiny_blip2)


@pytest.fixture
def raw(tmp_path) -> Path:
    """A synthetic release of 10 movies (with its faults) whose posters.csv has no captions yet."""
    root = make_raw_release(tmp_path / "raw", num_posters=10, num_actors=2, seed=3)
    write_posters(root, [{"id": row["id"], "text": ""} for row in read_posters(root)])
    return root


def read_posters(root: Path) -> list[dict]:
    with open(root / "posters.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_posters(root: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(root / "posters.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def report(root: Path) -> dict:
    lines = (root / "caption_report.jsonl").read_text(encoding="utf-8").splitlines()
    return {(entry["id"], entry.get("row")): entry for entry in map(json.loads, lines)}


def run_caption(root, loaded, **kwargs):
    model, processor = loaded
    options = dict(processor=processor, batch_size=4, generate_kwargs=VARIED, progress=False)
    return caption_posters(root, model, **{**options, **kwargs})


USABLE = [1000, 1003, 1015, 1018, 1021, 1024, 1027]  # the synthetic faults are on 1006 to 1012


def test_writes_captions_with_the_prompt_and_marks_the_model(raw, loaded):
    summary = run_caption(raw, loaded)
    rows = {int(row["id"]): row for row in read_posters(raw)}
    assert summary.written == len(USABLE)
    for movie_id in USABLE:
        assert rows[movie_id]["text"].startswith("a movie poster of ")
        assert len(rows[movie_id]["text"].split()) == 4 + 3
        assert rows[movie_id]["text-source"].startswith("model:")
    assert not (raw / "caption_progress.jsonl").exists()


def test_every_movie_not_captioned_is_reported_with_its_reason(raw, loaded):
    run_caption(raw, loaded)
    reasons = {entry["id"]: entry["reason"] for entry in report(raw).values()}
    assert reasons[1006] == "image_undecodable"
    assert reasons[1009] == "missing_image"
    assert reasons[1012] == "excluded_genre"
    assert sorted(reasons.values()).count("duplicate_id") == 1
    assert None in reasons and reasons[None] == "invalid_id"
    assert {int(row["id"]) for row in read_posters(raw) if row["text"]} == set(USABLE)


def test_batches_give_the_captions_of_single_posters(raw, loaded, tmp_path):
    run_caption(raw, loaded, batch_size=4)
    batched = {row["id"]: row["text"] for row in read_posters(raw)}
    write_posters(raw, [{"id": row["id"], "text": ""} for row in read_posters(raw)])
    run_caption(raw, loaded, batch_size=1)
    assert {row["id"]: row["text"] for row in read_posters(raw)} == batched


def test_a_second_run_skips_what_is_captioned(raw, loaded):
    run_caption(raw, loaded)
    before = (raw / "posters.csv").read_bytes()
    summary = run_caption(raw, loaded)
    assert summary.written == 0
    assert summary.counts["already_captioned"] == len(USABLE)
    assert (raw / "posters.csv").read_bytes() == before


def test_overwrite_replaces_model_captions_but_keeps_human_and_unmarked_ones(raw, loaded):
    rows = read_posters(raw)
    texts = {1000: ("a hand-corrected caption", "human"), 1003: ("an unmarked caption", ""),
             1015: ("an old model caption", "model:old/captioner")}
    for row in rows:
        if int(row["id"]) in texts:
            row["text"], row["text-source"] = texts[int(row["id"])]
    write_posters(raw, rows)
    summary = run_caption(raw, loaded, overwrite=True)
    after = {int(row["id"]): row for row in read_posters(raw)}
    assert (after[1000]["text"], after[1000]["text-source"]) == texts[1000]
    assert (after[1003]["text"], after[1003]["text-source"]) == texts[1003]
    assert after[1015]["text"].startswith("a movie poster of ") and after[1015]["text-source"] != "model:old/captioner"
    assert (summary.counts["kept_human"], summary.counts["kept_unmarked"]) == (1, 1)


def test_overwrite_human_replaces_every_caption(raw, loaded):
    rows = read_posters(raw)
    rows[0]["text"], rows[0]["text-source"] = "a hand-corrected caption", "human"
    write_posters(raw, rows)
    run_caption(raw, loaded, overwrite_human=True)
    assert read_posters(raw)[0]["text"].startswith("a movie poster of ")


def test_degenerate_outputs_are_reported_not_written(raw, loaded):
    model, processor = loaded
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()  # every logit equal: the pad token, decoded to nothing
    summary = caption_posters(raw, model, processor=processor, batch_size=4, progress=False)
    assert summary.written == 0
    flagged = [entry for entry in report(raw).values() if entry["reason"] == "empty"]
    assert sorted(entry["id"] for entry in flagged) == USABLE
    assert not any(row["text"] for row in read_posters(raw))


@pytest.mark.parametrize("text, reason", [
    ("", "empty"), ("   ", "empty"), ("... !!", "no_words"), ("a man man man at night", "repeated_words"),
    ("a red car a red car a red car", "repeated_phrase"), ("poster a poster b poster a poster b", "repetitive"),
    ("a woman in a red dress stands in front of a burning city", None),
])
def test_degenerate_reason(text, reason):
    assert degenerate_reason(text) == reason


def test_captions_of_an_interrupted_run_are_kept_and_not_redone(raw, loaded):
    """The state a kill leaves: captions in the progress file, not yet in posters.csv, the last line cut short."""
    (raw / "caption_progress.jsonl").write_text(
        json.dumps({"id": 1000, "text": "a movie poster of a lighthouse", "source": "model:earlier"}) + "\n"
        + '{"id": 1003, "text": "a movie po', encoding="utf-8")
    summary = run_caption(raw, loaded)
    rows = {int(row["id"]): row for row in read_posters(raw)}
    assert (rows[1000]["text"], rows[1000]["text-source"]) == ("a movie poster of a lighthouse", "model:earlier")
    assert summary.written == len(USABLE) - 1
    assert rows[1003]["text"].startswith("a movie poster of ")


_CHILD = """
import sys, threading
from transformers import AutoModelForImageTextToText, AutoProcessor
from mpds.acquisition.caption import caption_posters

model = AutoModelForImageTextToText.from_pretrained(sys.argv[2]).eval()
processor = AutoProcessor.from_pretrained(sys.argv[2])
generate, calls = model.generate, []

def generate_then_stall(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # the first batch is in the progress file: stall in the second until killed
        print("stalled", flush=True)
        threading.Event().wait()
    return generate(*args, **kwargs)

model.generate = generate_then_stall
caption_posters(sys.argv[1], model, processor=processor, batch_size=3, progress=False,
                generate_kwargs={"min_new_tokens": 3, "max_new_tokens": 3, "no_repeat_ngram_size": 1})
"""


def test_a_run_killed_halfway_then_restarted_ends_like_an_uninterrupted_run(raw, tmp_path, tiny_blip2, loaded):
    """A real SIGKILL of a child process at a deterministic point: inside the second `generate` call,
    after the captions of the first batch went to the progress file."""
    import shutil

    reference = tmp_path / "reference"
    shutil.copytree(raw, reference)
    model, processor = loaded
    run_caption(reference, (model, processor), batch_size=3)

    paths = [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), HF_HUB_OFFLINE="1")
    before = (raw / "posters.csv").read_bytes()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(raw), str(tiny_blip2)], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "stalled"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert (raw / "posters.csv").read_bytes() == before
    # The first batch is 1000, 1003 and 1006, whose poster is unreadable: two captions.
    journal = (raw / "caption_progress.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in journal] == [1000, 1003]

    summary = run_caption(raw, (model, processor), batch_size=3)
    assert summary.written == len(USABLE) - 2
    assert (raw / "posters.csv").read_bytes() == (reference / "posters.csv").read_bytes()
    assert not (raw / "caption_progress.jsonl").exists()


def test_the_command_loads_the_model_from_its_folder(raw, tiny_blip2, capsys):
    parser = argparse.ArgumentParser(prog="mpds")
    caption_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["caption", str(raw), "--model", str(tiny_blip2), "--max-new-tokens", "4",
                              "--batch-size", "3", "--device", "cpu", "--no-progress"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "captions written to posters.csv" in out
    written = {int(row["id"]) for row in read_posters(raw) if row["text"]}
    flagged = {entry["id"] for entry in report(raw).values() if entry.get("output") is not None}
    assert written | flagged == set(USABLE) and not written & flagged
    assert all(row["text-source"] == f"model:{tiny_blip2}" for row in read_posters(raw) if row["text"])


def test_the_command_explains_a_folder_that_is_not_a_release(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="mpds")
    caption_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["caption", str(tmp_path), "--no-progress"])
    assert args.func(args) == 2
    assert "meta.csv is missing" in capsys.readouterr().err


def test_a_bad_batch_size_is_a_clear_error(raw, loaded):
    from mpds.acquisition.caption import CaptionError

    with pytest.raises(CaptionError, match="batch_size"):
        run_caption(raw, loaded, batch_size=0)
    with pytest.raises(CaptionError, match="processor"):
        caption_posters(raw, loaded[0])
