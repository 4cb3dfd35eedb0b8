"""The one place where dctutor chooses a device."""
from __future__ import annotations

import torch


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """Return the torch device to compute on.

    ``None`` or ``"auto"`` picks CUDA when it is present and the CPU otherwise, so the same
    notebook runs on a laptop and on a Colab GPU. An explicit ``"cuda"`` on a machine without
    one is an error rather than a silent fall-back, because the user asked for speed they
    would not get. Only the CPU and CUDA are supported.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string such as 'cpu', 'cuda' or 'auto', got {type(device).__name__}")
    try:
        chosen = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from err
    if chosen.type not in ("cpu", "cuda"):
        # meta tensors hold no data, and MPS and the other backends are untested here: a run would
        # fail later, or lie.
        raise ValueError(f"device={device!r} is not supported by dctutor (mps, meta and other torch "
                         f"backends are not); use 'auto', 'cpu' or 'cuda'")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; in Colab pick a GPU with "
                         "Runtime > Change runtime type > T4 GPU (then rerun), or use device='auto' or 'cpu'")
    return chosen
