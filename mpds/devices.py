"""Where model work runs by default."""


def best_device() -> str:
    """`"cuda"` when a GPU is visible, else `"mps"` on Apple silicon, else `"cpu"`."""
    import torch  # here, so that modules that only download or parse never import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
