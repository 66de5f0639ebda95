"""Publishing a hub-layout build to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..loading_script.card import DEFAULT_REPO_ID
from .hub_layout import STATE_DIR

IGNORED = [f"{STATE_DIR}/*", f"{STATE_DIR}/**", "*.tmp"]


def push_to_hub(out_dir, repo_id: str, *, token: Optional[str] = None, private: bool = False,
                revision: Optional[str] = None, commit_message: str = "Upload MPDS", api=None) -> str:
    """Upload a finished `mpds build` folder as a dataset repo; returns the repo URL.

    The card's usage examples are set to `repo_id`; the build state (`.mpds/`) stays local.

    Raises:
        FileNotFoundError: if `out_dir` has no card (the build was not merged).

    Example:
        >>> push_to_hub("mpds-hub", "my-org/mpds")  # doctest: +SKIP
    """
    from huggingface_hub import HfApi

    out = Path(out_dir)
    card = out / "README.md"
    if not card.is_file():
        raise FileNotFoundError(f"{out} has no README.md dataset card: finish the build (`mpds merge {out}`) first")
    text = card.read_text(encoding="utf-8")
    if f'"{DEFAULT_REPO_ID}"' in text and repo_id != DEFAULT_REPO_ID:
        card.write_text(text.replace(f'"{DEFAULT_REPO_ID}"', f'"{repo_id}"'), encoding="utf-8")
    api = api or HfApi(token=token)
    repo = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(out), repo_type="dataset", revision=revision,
                      commit_message=commit_message, ignore_patterns=IGNORED)
    return str(getattr(repo, "url", repo))
