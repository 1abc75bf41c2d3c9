"""Kernel latency and memory, measured through jupyter_client, for any
installed kernels side by side in one run. Prints one JSON object per kernel.

  python3 kernel_bench.py KERNEL:TRIVIAL_CODE:PRINT_LOOP_CODE ... [--starts N] [--cells N]
"""
import argparse
import json
import os
import statistics
import time

from jupyter_client.manager import KernelManager


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_idle(kc, msg_id, timeout=120):
    lines = 0
    deadline = time.time() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            lines += msg["content"]["text"].count("\n")
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return lines


def reply(kc, msg_id, timeout=120):
    while True:
        msg = kc.get_shell_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def start(name):
    km = KernelManager(kernel_name=name)
    t0 = time.perf_counter()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    # First kernel_info reply: keep asking until one comes back (as jupyter_client's wait_for_ready does).
    while True:
        msg_id = kc.kernel_info()
        try:
            while True:
                m = kc.get_shell_msg(timeout=0.05)
                if m["parent_header"].get("msg_id") == msg_id:
                    return km, kc, time.perf_counter() - t0
        except Exception:
            continue


def bench(name, trivial, loop, starts, cells):
    start_times = []
    for _ in range(starts):
        km, kc, t = start(name)
        start_times.append(t)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    km, kc, _ = start(name)
    pid = km.provisioner.process.pid
    mem_start = rss_mb(pid)
    time.sleep(5)
    mem_settled = rss_mb(pid)
    # Warm up, then time trivial cells: request sent -> reply and idle received.
    # Each cell is different ("{i}" is the cell's number), so no cache answers for it;
    # then the same cell again and again (a re-run).
    for i in range(5):
        msg_id = kc.execute(trivial.replace("{i}", str(i)))
        reply(kc, msg_id)
        wait_idle(kc, msg_id)

    def time_cells(codes):
        rtts, checks = [], []
        for code in codes:
            t0 = time.perf_counter()
            msg_id = kc.execute(code)
            r = reply(kc, msg_id)
            wait_idle(kc, msg_id)
            rtts.append((time.perf_counter() - t0) * 1000)
            timing = r["metadata"].get("retromae")
            if timing:
                checks.append(timing["check_ms"])
        return sorted(rtts), sorted(checks)

    rtts, checks = time_cells([trivial.replace("{i}", str(1000 + i)) for i in range(cells)])
    repeat_rtts, repeat_checks = time_cells([trivial.replace("{i}", "7")] * cells)
    loops = []
    for _ in range(3):
        t0 = time.perf_counter()
        msg_id = kc.execute(loop)
        lines = wait_idle(kc, msg_id)
        loops.append((time.perf_counter() - t0) * 1000)
        assert lines == 10000, f"{name}: {lines} lines arrived"
    mem_after = rss_mb(pid)
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    out = {
        "kernel": name,
        "start_to_kernel_info_s": round(statistics.median(start_times), 3),
        "start_runs_s": [round(t, 3) for t in start_times],
        "trivial_cell_ms_median": round(statistics.median(rtts), 2),
        "trivial_cell_ms_p95": round(rtts[int(0.95 * (len(rtts) - 1))], 2),
        "repeated_cell_ms_median": round(statistics.median(repeat_rtts), 2),
        "repeated_cell_ms_p95": round(repeat_rtts[int(0.95 * (len(repeat_rtts) - 1))], 2),
        "print_10000_lines_ms": round(statistics.median(loops), 1),
        "print_runs_ms": [round(t, 1) for t in loops],
        "rss_mb_after_start": round(mem_start, 1),
        "rss_mb_5s_after_start": round(mem_settled, 1),
        "rss_mb_after_bench": round(mem_after, 1),
    }
    if checks:
        out["typecheck_repeated_ms_median"] = round(statistics.median(repeat_checks), 2)
        out["typecheck_trivial_ms_median"] = round(statistics.median(checks), 2)
        out["typecheck_trivial_ms_p95"] = round(checks[int(0.95 * (len(checks) - 1))], 2)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("kernels", nargs="+")
    p.add_argument("--starts", type=int, default=5)
    p.add_argument("--cells", type=int, default=200)
    a = p.parse_args()
    for spec in a.kernels:
        name, trivial, loop = spec.split(":", 2)
        print(json.dumps(bench(name, trivial, loop, a.starts, a.cells)), flush=True)
