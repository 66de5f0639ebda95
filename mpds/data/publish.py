"""Publishing a hub-layout build to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..loading_script.card import DEFAULT_REPO_ID
from .hub_layout import STATE_DIR

IGNORED = [f"{STATE_DIR}/*", f"{STATE_DIR}/**", "*.tmp"]


def push_to_hub(out_dir, repo_id: str, *, token: Optional[str] = None, private: bool = False,
                revision: Optional[str] = None, commit_message: str = "Upload MPDS", api=None) -> str:
    """Upload a finished `mpds build` folder as a dataset repo in one commit; returns the repo URL.

    The uploaded card's usage examples name `repo_id` (the card in `out_dir` is left as it is); the
    build state (`.mpds/`) stays local.

    Raises:
        FileNotFoundError: if `out_dir` has no card (the build was not merged).

    Example:
        >>> push_to_hub("mpds-hub", "my-org/mpds")  # doctest: +SKIP
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.utils import filter_repo_objects

    out = Path(out_dir)
    card = out / "README.md"
    if not card.is_file():
        raise FileNotFoundError(f"{out} has no README.md dataset card: finish the build (`mpds merge {out}`) first")
    text = card.read_text(encoding="utf-8")
    if repo_id != DEFAULT_REPO_ID:
        text = text.replace(f'"{DEFAULT_REPO_ID}"', f'"{repo_id}"')
    files = sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file())
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(out / name))
                  for name in filter_repo_objects(files, ignore_patterns=[*IGNORED, "README.md"])]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=text.encode("utf-8")))
    api = api or HfApi(token=token)
    repo = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.create_commit(repo_id=repo_id, operations=operations, repo_type="dataset", revision=revision,
                      commit_message=commit_message)
    return str(getattr(repo, "url", repo))
