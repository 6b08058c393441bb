"""The arithmetic precision of the training passes, and torch's process-wide TF32 switches."""

from __future__ import annotations

import torch

PRECISIONS = ("fp32", "tf32", "bf16")
"""What ``--precision`` accepts: float32, float32 with TensorFloat-32 convolutions and matmuls
allowed on a GPU, or bfloat16 autocast (``blendrl.algos.iql``'s module docstring)."""


def set_tf32(precision: str) -> None:
    """Set torch's process-wide TF32 switches for ``precision``: TensorFloat-32 convolutions (cuDNN)
    and matmuls (cuBLAS) on for ``tf32``, off otherwise (torch's default lets cuDNN use TF32, so
    without this an ``fp32`` convolution on an Ampere or later GPU is TF32). No effect on a CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
