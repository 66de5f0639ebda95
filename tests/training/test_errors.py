"""Each error of the issue's list stops with a clear message, and leaves what was already saved in place."""

import json
import shutil

import pytest

from mpds.training import TrainingError


def test_an_unknown_genre_names_the_genre_splits(train, tiny_args):
    with pytest.raises(TrainingError, match=r"no poster split\(s\) western; the genre splits are action, adventure"):
        train.main(tiny_args("lora", "--genres", "drama,Western"))


def test_an_empty_posters_config_is_refused(train, tiny_args, tmp_path):
    from mpds.data import build, sample_dir

    raw = shutil.copytree(sample_dir(), tmp_path / "raw")
    meta = (raw / "meta.csv").read_text(encoding="utf-8").splitlines()[0]
    (raw / "meta.csv").write_text(meta + "\n", encoding="utf-8")  # no movie: every poster is rejected
    empty = tmp_path / "empty"
    build(raw, empty, progress=False)
    arguments = tiny_args("lora")
    arguments[arguments.index("--dataset") + 1] = str(empty)
    with pytest.raises(TrainingError, match="posters config of .* is empty: no poster to train on"):
        train.main(arguments)


def test_an_actor_with_no_photos_is_named(train, tiny_args, tmp_path):
    from mpds.data import build, sample_dir

    raw = shutil.copytree(sample_dir(), tmp_path / "raw")
    for photo in raw.glob("actors/100*.jpg"):
        photo.unlink()
    without_photos = tmp_path / "hub"
    build(raw, without_photos, progress=False)
    arguments = tiny_args("actor", "--actors", "100,107")
    arguments[arguments.index("--dataset") + 1] = str(without_photos)
    with pytest.raises(TrainingError, match=r"No photo for the actor\(s\) Ava Stone \(id 100\)"):
        train.main(arguments)


def test_an_unknown_actor_is_named(train, tiny_args):
    with pytest.raises(TrainingError, match="No actor 'Nobody Known'"):
        train.main(tiny_args("actor", "--actors", "Nobody Known"))


def test_a_base_model_without_a_unet_is_refused(train, tiny_args, base_model, tmp_path):
    broken = shutil.copytree(base_model, tmp_path / "no-unet")
    shutil.rmtree(broken / "unet")
    arguments = tiny_args("lora")
    arguments[arguments.index("--base-model") + 1] = str(broken)
    with pytest.raises(TrainingError, match=r"lacks the component\(s\) unet; training needs vae, text_encoder"):
        train.main(arguments)


def test_a_folder_that_is_no_model_is_refused(train, tiny_args, tmp_path):
    arguments = tiny_args("lora")
    arguments[arguments.index("--base-model") + 1] = str(tmp_path)
    with pytest.raises(TrainingError, match="Cannot read .* as a base model"):
        train.main(arguments)


def test_a_resolution_not_a_multiple_of_8_is_refused(train, tiny_args):
    with pytest.raises(TrainingError, match="--resolution must be a positive multiple of 8 .* got 36; try 32"):
        train.main(tiny_args("lora", "--resolution", "36"))


def test_a_nan_loss_stops_naming_the_step_and_the_last_checkpoint(train, tiny_args, tmp_path):
    output_dir = tmp_path / "run"
    # A huge learning rate blows the LoRA weights up at the first steps; the loss turns inf or NaN soon after.
    arguments = tiny_args("lora", "--learning_rate", "1e30", "--max_train_steps", "20", "--checkpointing_steps", "1",
                          "--max_grad_norm", "1e30", output_dir=output_dir)
    with pytest.raises(TrainingError) as error:
        train.main(arguments)
    message = str(error.value)
    step = int(message.split(" at step ")[1].split(":")[0])
    assert step >= 2 and "training stopped before updating the weights" in message
    last = output_dir / f"checkpoint-{step - 1}"
    assert f"Last checkpoint: {last}." in message
    assert (last / "pytorch_lora_weights.safetensors").is_file()  # nothing saved is lost
    logged = [json.loads(line) for line in (output_dir / "training_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == list(range(1, step))


def test_a_bad_config_key_is_named(tmp_path):
    from mpds.training import parse_args

    config = tmp_path / "bad.yaml"
    config.write_text("task: lora\nlearning_rte: 1.0e-4\n")
    with pytest.raises(TrainingError, match="unknown setting 'learning_rte'"):
        parse_args(["--config", str(config)])


def test_a_new_run_does_not_overwrite_an_earlier_runs_checkpoints(train, tiny_args, tmp_path):
    output_dir = tmp_path / "run"
    train.main(tiny_args("lora", "--max_train_steps", "2", output_dir=output_dir))
    saved = (output_dir / "checkpoint-2" / "pytorch_lora_weights.safetensors").read_bytes()
    log = (output_dir / "training_log.jsonl").read_text()
    with pytest.raises(TrainingError, match="already holds checkpoint-2: continue that run with --resume_from"):
        train.main(tiny_args("lora", "--max_train_steps", "2", "--seed", "5", output_dir=output_dir))
    assert (output_dir / "checkpoint-2" / "pytorch_lora_weights.safetensors").read_bytes() == saved
    assert (output_dir / "training_log.jsonl").read_text() == log


def test_push_to_hub_exports_the_bundle_then_says_how_to_publish_it_when_the_hub_is_unreachable(
        train, tiny_args, tmp_path):
    # The tests run in huggingface_hub's own offline mode (HF_HUB_OFFLINE=1, see conftest): the upload is attempted
    # for real and refused without any network.
    bundle = tmp_path / "bundle"
    with pytest.raises(TrainingError, match=r"--push_to_hub someone/mpds-poster: the upload failed \(.*offline mode"
                                            r".*\)\. The bundle is complete in .*bundle; publish it with `hf upload "
                                            r"someone/mpds-poster "):
        train.main(tiny_args("lora", "--export", str(bundle), "--push_to_hub", "someone/mpds-poster"))
    assert (bundle / "model_index.json").is_file() and (bundle / "lora" / "mpds_poster").is_dir()
    assert "task `lora`" in (bundle / "README.md").read_text()
