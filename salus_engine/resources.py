"""Memory sampling for the console's gauge: GPU memory when CUDA is in use, process RSS otherwise."""

from __future__ import annotations

import psutil

from salus_engine.events import ResourceSample


def sample_memory(device: str, gpu_budget_gb: float) -> ResourceSample:
    """Samples memory use in the calling (engine) thread.

    With a CUDA device: memory reserved by this process's torch allocator (GiB) against
    `gpu_budget_gb` (the seeds' 11 GB card). Otherwise: this process's resident set size (GiB)
    against the machine's total RAM.
    """
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            index = torch.device(device).index or 0
            used = torch.cuda.memory_reserved(index) / 2**30
            return ResourceSample(used_gb=used, budget_gb=gpu_budget_gb, kind="gpu")
    rss = psutil.Process().memory_info().rss / 2**30
    return ResourceSample(used_gb=rss, budget_gb=psutil.virtual_memory().total / 2**30, kind="ram")
