"""What a result depends on, recorded beside it (``metrics.json``, bench JSON): seed, device,
thread count and library versions, so a number can be reproduced or explained later.

Bit-reproducibility (see the README): on CPU a run is repeatable bit for bit for the same seed,
thread count, torch build and machine type; another thread count changes the order of float
reductions (e.g. a 100-step digits tokenizer: PSNR 21.686 dB with 1 thread, 21.619 dB with 2).
"""

from __future__ import annotations

import platform
import sys
import time


def run_metadata(seed: int | None = None, device: str | None = None) -> dict:
    """``{seed, device, threads, versions{...}, command, started}`` for the current process."""
    import numpy
    import torch

    import artok

    device_name = str(device) if device is not None else "cpu"
    if device_name.startswith("cuda") and torch.cuda.is_available():
        device_name = f"{device_name} ({torch.cuda.get_device_name(torch.device(device_name))})"
    return {
        "seed": seed,
        "device": device_name,
        "threads": torch.get_num_threads(),
        "versions": {"artok": artok.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
                     "python": platform.python_version()},
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join(["artok", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("artok") else None,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
