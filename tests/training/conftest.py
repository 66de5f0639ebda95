"""Fixtures of the training tests: the embedded sample built once, tiny random base models saved to folders."""

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = ROOT / "training" / "train.py"


@pytest.fixture(scope="session")
def train():
    """The `training/train.py` script as a module (its `main(argv)` runs a training in this process)."""
    spec = importlib.util.spec_from_file_location("mpds_train_script", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    """Each in-process run makes its own `Accelerator`; accelerate keeps one state per process, reset it after."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; two OpenMP threads on busy shared cores spin and run 30x slower."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    from mpds.data import build, sample_dir

    out = tmp_path_factory.mktemp("mpds") / "hub"
    build(sample_dir(), out, progress=False)
    return str(out)


@pytest.fixture(scope="session")
def base_model(tmp_path_factory):
    """A tiny Stable Diffusion folder (random weights), without a ControlNet."""
    from mpds.testing.components import build_poster_pipeline

    folder = tmp_path_factory.mktemp("base") / "tiny-sd"
    build_poster_pipeline(size="tiny", with_controlnet=False).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def tiny_args(dataset, base_model, tmp_path):
    """Arguments of a quick run on the tiny base; tests add the task and their own flags."""

    def make(task, *extra, output_dir=None):
        return [
            "--task", task, "--dataset", dataset, "--base-model", base_model,
            "--output_dir", str(output_dir or tmp_path / f"run-{task}"), "--resolution", "32",
            "--train_batch_size", "2", "--max_train_steps", "3", "--report_to", "none",
            "--checkpointing_steps", "100", *extra,
        ]

    return make
