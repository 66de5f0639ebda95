"""Builders shared by the tests, the demo and the benchmarks: synthetic raw releases and tiny models."""

from .synthetic import draw_face, draw_poster, make_raw_release

__all__ = ["draw_face", "draw_poster", "make_raw_release"]
