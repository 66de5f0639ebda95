import json
import shutil

import pytest

from mpds.data import BuildOptions, build, sample_dir


@pytest.fixture(scope="session")
def sample():
    return sample_dir()


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The embedded sample built once into the Parquet hub layout."""
    out = tmp_path_factory.mktemp("built") / "hub"
    summary = build(sample_dir(), out, progress=False)
    return out, summary


@pytest.fixture(scope="session")
def built_webdataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("built-wds") / "hub"
    build(sample_dir(), out, BuildOptions(format="webdataset"), progress=False)
    return out


@pytest.fixture
def raw_copy(tmp_path):
    """A writable copy of the sample, for tests that damage it."""
    return shutil.copytree(sample_dir(), tmp_path / "raw")


def read_rejects(out):
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
