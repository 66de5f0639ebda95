"""Training on a dataset repo id and `--push_to_hub`, through the real `huggingface_hub`/`datasets` HTTP code,
against the Hub stand-in of `mpds.testing.hub` (the real Hub is unreachable here)."""

import json

from .conftest import TRAIN_SCRIPT

PUSH_TRAIN_LOAD = """
import json, runpy, sys
import numpy as np, torch
from mpds.cli import main as mpds_main
from mpds.pipeline import MPDSPosterPipeline

dataset, base_model, run_dir, bundle, script = sys.argv[1:]
mpds_main(["push", dataset, "me/mpds"])
train = runpy.run_path(script)
summary = train["main"]([
    "--task", "lora", "--dataset", "me/mpds", "--genres", "drama", "--base-model", base_model,
    "--output_dir", run_dir, "--resolution", "32", "--train_batch_size", "2", "--max_train_steps", "2",
    "--report_to", "none", "--export", bundle, "--push_to_hub", "me/poster-lora",
])

def poster(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe("a movie poster", height=32, width=32, num_inference_steps=2, output_type="np",
                generator=torch.Generator().manual_seed(0)).images

remote = MPDSPosterPipeline.from_pretrained("me/poster-lora")
same = np.array_equal(poster(remote), poster(MPDSPosterPipeline.from_pretrained(bundle)))
print(json.dumps({"commit": summary["hub_commit"], "same_image": bool(same), "adapters": remote.get_active_adapters(),
                  "steps": summary["steps"]}))
"""


def test_training_streams_a_dataset_repo_and_pushes_the_bundle(dataset, base_model, tmp_path, local_hub):
    output = local_hub.run(PUSH_TRAIN_LOAD, dataset, base_model, str(tmp_path / "run"), str(tmp_path / "bundle"),
                           str(TRAIN_SCRIPT))
    result = json.loads(output.strip().splitlines()[-1])

    assert result["same_image"] and result["adapters"] == ["mpds_poster"] and result["steps"] == 2
    assert "/me/poster-lora/commit/" in result["commit"]
    # the data came from the repo
    assert any(method == "GET" and path.startswith("/api/datasets/me/mpds/tree/") for method, path in local_hub.requests)
    card = (local_hub.repo_dir("me/poster-lora") / "README.md").read_text()
    assert "task `lora`" in card and "- me/mpds" in card and 'from_pretrained("me/poster-lora")' in card
    uploaded = sorted(p.relative_to(local_hub.repo_dir("me/poster-lora")).as_posix()
                      for p in local_hub.repo_dir("me/poster-lora").rglob("*") if p.is_file())
    exported = sorted(p.relative_to(tmp_path / "bundle").as_posix() for p in (tmp_path / "bundle").rglob("*") if p.is_file())
    assert uploaded == exported
