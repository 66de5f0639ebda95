"""Fixtures shared by every test folder. Tests never reach the network."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    """Keep `datasets`' cache out of the user's home and fresh for each session."""
    cache = tmp_path_factory.getbasetemp() / "hf-datasets-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)


@pytest.fixture
def local_hub(tmp_path):
    """A Hub stand-in on 127.0.0.1 (`mpds.testing.hub.LocalHub`) and a runner of Python code against it.

    `local_hub.run(code)` runs `code` in a fresh interpreter whose `huggingface_hub` and `datasets`
    talk to the stand-in, as a user's would talk to the Hub; it returns the process's stdout.
    """
    import subprocess
    import sys

    from mpds.testing.hub import LocalHub

    with LocalHub(tmp_path / "local-hub") as hub:
        environment = {**os.environ, **hub.environment(), "HF_HOME": str(tmp_path / "hf-home")}

        def run(code: str, *args: str, timeout: int = 600) -> str:
            result = subprocess.run([sys.executable, "-c", code, *args], env=environment,
                                    capture_output=True, text=True, timeout=timeout)
            assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
            return result.stdout

        hub.run = run
        yield hub
