"""Helpers of `training/train.py`: arguments, base models, data streams, the latent cache and the bundle export."""

from .arguments import TASKS, parse_args
from .errors import TrainingError

__all__ = ["TASKS", "TrainingError", "parse_args"]
