"""rlbench: a pytest-based benchmark and regression suite for compressed deep-RL policies."""

__version__ = "0.1.0"
