"""Which torch device to run on; shared by the trainer and the Serve replica."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(setting: str, *, key: str = "train.device") -> torch.device:
    """``auto`` picks CUDA when this process sees a GPU, else CPU; ``cuda`` without one fails.

    ``key`` names the config key in the error message.
    """
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{key} is 'cuda' but this process sees no CUDA device")
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(setting)
