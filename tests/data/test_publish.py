import shutil

import pytest

from mpds.data import push_to_hub
from mpds.data.publish import IGNORED


class RecordingHub:
    """Stands in for the Hub's HTTP API (unreachable here); records what a push sends."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))


def test_push_creates_a_dataset_repo_and_uploads_the_layout_but_not_the_build_state(built, tmp_path):
    out = shutil.copytree(built[0], tmp_path / "hub")
    hub = RecordingHub()
    url = push_to_hub(out, "me/mpds", private=True, api=hub)
    assert url == "https://huggingface.co/datasets/me/mpds"
    (_, repo, create), (_, _, upload) = hub.calls
    assert repo == "me/mpds" and create["repo_type"] == "dataset" and create["private"] is True
    assert upload["folder_path"] == str(out) and upload["repo_type"] == "dataset"
    assert ".mpds/*" in upload["ignore_patterns"] == IGNORED
    card = (out / "README.md").read_text()
    assert 'load_dataset("me/mpds", "posters"' in card


def test_push_of_an_unfinished_build_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="mpds merge"):
        push_to_hub(tmp_path, "me/mpds", api=RecordingHub())
