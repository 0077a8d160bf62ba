"""secvit: secure (MPC) inference for compressed Vision Transformers."""

__version__ = "0.1.0"
