"""Builders shared by the tests, the demo and the benchmarks: synthetic raw releases and tiny models.

`mpds.testing.components` builds tiny (or Stable-Diffusion-1.5-sized) random-weight pipeline parts,
`mpds.testing.eval_models` tiny scoring models; both import torch, so they load on first use.
"""

from .synthetic import draw_face, draw_poster, make_raw_release

__all__ = ["draw_face", "draw_poster", "make_raw_release"]
