"""torch's process-wide GPU kernel choice: cuDNN autotuning and TF32 for speed, or deterministic full-precision
kernels for bit-exact work. The CPU path is deterministic either way."""

from __future__ import annotations

import torch


def set_kernels(deterministic: bool) -> None:
    """Fast (deterministic False): cuDNN times its convolution algorithms once per input shape and keeps the
    fastest (the inputs are img_size² throughout), and fp32 matmuls and convolutions run in TF32 on GPUs that have
    it. Deterministic: cuDNN's deterministic algorithms without autotuning, and full fp32 matmuls and
    convolutions. AMP (train.amp) is a separate choice."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.allow_tf32 = not deterministic
    torch.set_float32_matmul_precision("highest" if deterministic else "high")
