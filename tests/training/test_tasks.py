"""Each task runs a few steps end to end and exports a bundle that `MPDSPosterPipeline.from_pretrained` loads."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mpds.pipeline import MPDSPosterPipeline, PosterCaption


@pytest.mark.parametrize("task", ["lora", "actor", "controlnet"])
def test_each_task_trains_and_exports_a_bundle_that_loads_and_generates(task, train, tiny_args, tmp_path):
    bundle = tmp_path / "bundle"
    extra = ["--export", str(bundle), "--validation_steps", "3", "--validation_inference_steps", "1",
             "--report_to", "tensorboard"]
    if task == "actor":
        extra += ["--actors", "100,Liam Tanaka"]
    summary = train.main(tiny_args(task, *extra))

    assert summary["steps"] == 3 and len(summary["losses"]) == 3
    assert all(loss > 0 for loss in summary["losses"])
    pipe = MPDSPosterPipeline.from_pretrained(bundle)
    kwargs = {"height": 32, "width": 32, "num_inference_steps": 2, "output_type": "np",
              "generator": torch.Generator().manual_seed(0)}
    if task == "lora":
        assert pipe.get_active_adapters() == ["mpds_poster"]
        image = pipe("a movie poster", **kwargs).images[0]
    elif task == "actor":
        assert pipe.actors == ["ava_stone", "liam_tanaka"]
        image = pipe("a movie poster of {actor}", actor="liam_tanaka", **kwargs).images[0]
    else:
        assert pipe.controlnet is not None
        output = pipe("a movie poster", caption=PosterCaption("NIGHT"), **kwargs)
        image = output.images[0]
        assert output.control_images[0].size == (32, 32)
    assert image.shape == (32, 32, 3) and image.std() > 0

    card = (bundle / "README.md").read_text()
    assert f"task `{task}`" in card and "| steps | 3 |" in card
    assert f"| final loss | {summary['final_loss']:.4f} |" in card
    assert (bundle / "validation" / "step-000003-0.png").is_file() and "validation/step-000003-0.png" in card
    logged = [json.loads(line) for line in (tmp_path / f"run-{task}" / "training_log.jsonl").read_text().splitlines()]
    assert [entry["loss"] for entry in logged] == summary["losses"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / f"run-{task}" / "logs" / "mpds-training"))
    events.Reload()
    assert [event.step for event in events.Scalars("loss")] == [1, 2, 3]
    assert "validation" in events.Tags()["images"]


def test_the_lora_bundle_changes_the_images_of_the_base_model(train, tiny_args, tmp_path, base_model):
    bundle = tmp_path / "bundle"
    train.main(tiny_args("lora", "--learning_rate", "1e-2", "--export", str(bundle)))
    kwargs = {"height": 32, "width": 32, "num_inference_steps": 2, "output_type": "np"}
    trained = MPDSPosterPipeline.from_pretrained(bundle)("a poster", generator=torch.Generator().manual_seed(0),
                                                         **kwargs)
    base = MPDSPosterPipeline.from_pretrained(base_model)("a poster", generator=torch.Generator().manual_seed(0),
                                                          **kwargs)
    assert abs(trained.images - base.images).max() > 1e-4
    trained_pipe = MPDSPosterPipeline.from_pretrained(bundle)
    trained_pipe.set_adapters(["mpds_poster"], adapter_weights=[0.0])
    without_lora = trained_pipe("a poster", generator=torch.Generator().manual_seed(0), **kwargs)
    assert abs(without_lora.images - base.images).max() < 1e-5  # the base weights were exported untouched


def test_the_shipped_configs_parse_and_dashed_flags_override_them(dataset, base_model, tmp_path):
    from mpds.training import parse_args

    for task in ("lora", "actor", "controlnet"):
        args = parse_args(["--config", f"training/configs/{task}.yaml", "--dataset", dataset,
                           "--base-model", base_model, "--output-dir", str(tmp_path), "--max-train-steps", "7"])
        assert args.task == task and args.max_train_steps == 7 and args.output_dir == str(tmp_path)
    args = parse_args(["--config", "training/configs/actor.yaml", "--dataset", dataset, "--base_model", base_model,
                       "--output_dir", str(tmp_path)])
    # The paper's recipe for actor tokens.
    assert (args.learning_rate, args.lr_end, args.train_batch_size, args.max_train_steps) == (5e-4, 1e-6, 4, 500)


def test_controlnet_validation_images_are_generated_under_bf16_mixed_precision(train, tiny_args, tmp_path):
    # Validation at step 1 of 2: the images are written and training goes on afterwards in float32 weights.
    output_dir = tmp_path / "run-bf16"
    summary = train.main(tiny_args("controlnet", "--mixed_precision", "bf16", "--max_train_steps", "2",
                                   "--validation_steps", "1", "--validation_inference_steps", "1",
                                   output_dir=output_dir))

    assert "mixed_precision=bf16" in (output_dir / "run_info.txt").read_text()
    assert summary["steps"] == 2 and all(torch.isfinite(torch.tensor(summary["losses"])))
    assert [Path(path).name for path in summary["validation_images"]] == ["step-000002-0.png"]
    for name in ("step-000001-0.png", "step-000002-0.png"):
        image = Image.open(output_dir / "validation" / name)
        assert image.size == (32, 32)
    weights = load_file(output_dir / "controlnet" / "diffusion_pytorch_model.safetensors")
    assert {tensor.dtype for tensor in weights.values()} == {torch.float32}
