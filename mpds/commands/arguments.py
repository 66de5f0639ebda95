"""Argument types shared by several `mpds` sub-commands."""

import argparse
import re


def shard(text: str) -> tuple:
    """`--shard i/N`: the i-th of N parts, counted from 0 as in `datasets.Dataset.shard` (`0/4` ... `3/4`)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise argparse.ArgumentTypeError(f"--shard takes i/N such as 0/4, got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(
            f"--shard i/N needs 0 <= i < N (the parts of {max(count, 1)} are 0/{max(count, 1)} to "
            f"{max(count, 1) - 1}/{max(count, 1)}), got {text!r}")
    return index, count
