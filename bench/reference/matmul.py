"""PyTorch reference for `npm run bench -- matmul`: GFLOP/s of an M x K x N float32 matmul.

Usage: /usr/bin/python3 bench/reference/matmul.py M K N [--seconds S]
Prints one JSON line. Run it with the environment the benchmark chooses.
"""
import json
import os
import sys
import time

import torch


def main() -> None:
    m, k, n = (int(x) for x in sys.argv[1:4])
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 3.0
    torch.manual_seed(0)
    a = torch.randn(m, k)
    b = torch.randn(k, n)
    out = torch.empty(m, n)
    torch.matmul(a, b, out=out)  # warm-up
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t = time.perf_counter()
        torch.matmul(a, b, out=out)
        times.append(time.perf_counter() - t)
    times.sort()
    best = times[0]
    median = times[len(times) // 2]
    flops = 2.0 * m * k * n
    print(json.dumps({
        "backend": "torch",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gflops": round(flops / median / 1e9, 2),
        "gflops_best": round(flops / best / 1e9, 2),
        "ms_median": round(median * 1e3, 3),
        "runs": len(times),
    }))


if __name__ == "__main__":
    main()
