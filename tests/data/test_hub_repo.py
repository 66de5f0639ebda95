"""`mpds push` and `load_dataset` on a repo id, through the real `huggingface_hub`/`datasets` HTTP code,
against the Hub stand-in of `mpds.testing.hub` (the real Hub is unreachable here)."""

import json
import shutil

import datasets

from mpds.loading_script.card import DEFAULT_REPO_ID

PUSH_THEN_LOAD = """
import json, sys
import datasets, mpds
from mpds.cli import main

main(["push", sys.argv[1], "me/mpds"])
streamed = datasets.load_dataset("me/mpds", "posters", split="drama", streaming=True)
drama = [(row["id"], row["image"].size, row["prompt"]) for row in streamed]
meta = mpds.load_dataset("meta", split="train", path="me/mpds")
actors = datasets.load_dataset("me/mpds", "actors", split="train")
print(json.dumps({"drama": drama, "meta_ids": list(meta["id"]), "actor_photos": [len(row["images"]) for row in actors]}))
"""


def test_a_pushed_build_loads_back_by_repo_id_streamed_and_downloaded(built, local_hub, tmp_path):
    out = shutil.copytree(built[0], tmp_path / "hub")
    card = (out / "README.md").read_text()
    result = json.loads(local_hub.run(PUSH_THEN_LOAD, str(out)).strip().splitlines()[-1])

    local = datasets.load_dataset(str(out), "posters", split="drama", streaming=True)
    assert result["drama"] == [[row["id"], list(row["image"].size), row["prompt"]] for row in local]
    assert result["meta_ids"] == list(datasets.load_dataset(str(out), "meta", split="train")["id"])
    assert result["actor_photos"] == [len(row["images"]) for row in datasets.load_dataset(str(out), "actors", split="train")]

    repo = local_hub.repo_dir("me/mpds", "dataset")
    uploaded = sorted(path.relative_to(repo).as_posix() for path in repo.rglob("*") if path.is_file())
    expected = sorted(path.relative_to(out).as_posix() for path in out.rglob("*")
                      if path.is_file() and not path.relative_to(out).as_posix().startswith(".mpds/"))
    assert uploaded == expected  # everything but the build state
    pushed_card = (repo / "README.md").read_text()
    assert 'load_dataset("me/mpds", "posters"' in pushed_card
    assert pushed_card == card.replace(f'"{DEFAULT_REPO_ID}"', '"me/mpds"') != card
    assert (out / "README.md").read_text() == card  # the build's own card is left as it was
    assert ("POST", "/api/datasets/me/mpds/commit/main") in local_hub.requests
