"""The GPU metrics path on a machine with NVIDIA GPUs: what the collector reports while
a GPU is busy, and whether silver accepts it. Prints figures; not a test (CI has no GPU).

    python scripts/gpu_check.py [--samples 6] [--load-s 8]

The load is a matrix product in PyTorch when it is installed; without it the GPUs idle
and utilisation stays at what other work gives.
"""

from __future__ import annotations

import argparse
import threading
import time

from collector.gpu import LINUX_DRIVER, NvidiaGpus
from collector.sampler import Sampler
from schemas.metrics import to_json
from schemas.validation import read_sample


def busy_gpu(seconds: float) -> None:
    try:
        import torch
    except ImportError:
        print("no torch: the GPUs are not loaded")
        return
    a = torch.randn(8192, 8192, device="cuda")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        (a @ a).sum().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--load-s", type=float, default=8.0)
    args = parser.parse_args()
    print(f"{LINUX_DRIVER} exists: {LINUX_DRIVER.exists()}")
    started = time.perf_counter()
    gpus = NvidiaGpus.open()
    print(f"NvidiaGpus.open: {gpus is not None} in {1000 * (time.perf_counter() - started):.1f} ms")
    if gpus is None:
        return
    sampler = Sampler("gpu-check", 1.0, [], gpus=gpus)
    load = threading.Thread(target=busy_gpu, args=(args.load_s,), daemon=True)
    load.start()
    for n in range(args.samples):
        started = time.perf_counter()
        gpu_read = gpus.read()
        read_ms = 1000 * (time.perf_counter() - started)
        document = sampler.sample()
        sample = read_sample(to_json(document))  # raises if silver would reject it
        if sample.gpus is None or len(sample.gpus) != len(gpu_read):
            raise SystemExit(f"sample {n}: silver kept {sample.gpus!r} of {gpu_read!r}")
        print(f"sample {n}: NVML read {read_ms:.2f} ms; silver accepts it; gpus: {gpu_read}")
        time.sleep(1.0)
    load.join()
    gpus.close()


if __name__ == "__main__":
    main()
