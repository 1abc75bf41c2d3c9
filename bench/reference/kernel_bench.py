"""Kernel latency and memory, measured through jupyter_client, for any
installed kernels side by side in one run. Prints one JSON object per kernel.

  python3 kernel_bench.py '{"name": KERNEL, "trivial": CODE, "loop": PRINT_LOOP_CODE, "import": IMPORT_CODE}' ... [--starts N] [--cells N]

Per kernel: start to first kernel_info reply; the first cell right after
start; trivial cells (each different, then one repeated) round trip; a
10,000-line print loop; RSS after start, and after IMPORT_CODE (the
library import a notebook starts with) and 100 distinct cells.
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
    """Start a kernel; time to its first kernel_info reply. Returns once iopub is connected too
    (an iopub status for one of our requests arrived, as jupyter_client's wait_for_ready waits)."""
    km = KernelManager(kernel_name=name)
    t0 = time.perf_counter()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    first_reply = None
    ids = set()
    while True:
        ids.add(kc.kernel_info())
        deadline = time.time() + 0.05
        while time.time() < deadline:
            try:
                m = kc.get_shell_msg(timeout=0.01)
                if first_reply is None and m["parent_header"].get("msg_id") in ids:
                    first_reply = time.perf_counter() - t0
            except Exception:
                pass
            try:
                m = kc.get_iopub_msg(timeout=0.01)
                if first_reply is not None and m["parent_header"].get("msg_id") in ids:
                    # Drain what is left of the warm-up requests.
                    time.sleep(0.05)
                    for get in (kc.get_shell_msg, kc.get_iopub_msg):
                        try:
                            while True:
                                get(timeout=0.01)
                        except Exception:
                            pass
                    return km, kc, first_reply
            except Exception:
                pass


def first_cell_ms(kc, code):
    t0 = time.perf_counter()
    msg_id = kc.execute(code)
    reply(kc, msg_id)
    wait_idle(kc, msg_id)
    return (time.perf_counter() - t0) * 1000


def bench(name, trivial, loop, starts, cells, import_code=None):
    start_times, first_cells = [], []
    for _ in range(starts):
        km, kc, t = start(name)
        start_times.append(t)
        # The first cell right after the kernel answers, as a user who runs all cells at once sees it.
        first_cells.append(first_cell_ms(kc, trivial.replace("{i}", "0")))
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
    loops, late_lines = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        msg_id = kc.execute(loop)
        lines = wait_idle(kc, msg_id)
        loops.append((time.perf_counter() - t0) * 1000)
        # A kernel may send output after its idle (Deno's does): count what still arrives, and report it.
        late = 0
        try:
            while lines + late < 10000:
                m = kc.get_iopub_msg(timeout=5)
                if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream":
                    late += m["content"]["text"].count("\n")
        except Exception:
            pass
        late_lines.append(late)
        assert lines + late == 10000, f"{name}: {lines + late} lines arrived"
    mem_after = rss_mb(pid)
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    mem_import = first_import = None
    if import_code:
        # A fresh kernel: the library import, then 100 distinct trivial cells.
        km, kc, _ = start(name)
        pid = km.provisioner.process.pid
        # Right after start, as the first cell of a notebook that imports the library.
        first_import = first_cell_ms(kc, import_code)
        for i in range(100):
            msg_id = kc.execute(trivial.replace("{i}", str(5000 + i)))
            reply(kc, msg_id)
            wait_idle(kc, msg_id)
        mem_import = rss_mb(pid)
        # And after a second of idleness, as a process monitor would see the kernel between cells.
        time.sleep(1)
        mem_import_idle = rss_mb(pid)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    out = {
        "kernel": name,
        "start_to_kernel_info_s": round(statistics.median(start_times), 3),
        "start_runs_s": [round(t, 3) for t in start_times],
        "first_cell_ms_median": round(statistics.median(first_cells), 1),
        "first_cell_runs_ms": [round(t, 1) for t in first_cells],
        "trivial_cell_ms_median": round(statistics.median(rtts), 2),
        "trivial_cell_ms_p95": round(rtts[int(0.95 * (len(rtts) - 1))], 2),
        "repeated_cell_ms_median": round(statistics.median(repeat_rtts), 2),
        "repeated_cell_ms_p95": round(repeat_rtts[int(0.95 * (len(repeat_rtts) - 1))], 2),
        "print_10000_lines_ms": round(statistics.median(loops), 1),
        "print_runs_ms": [round(t, 1) for t in loops],
        "print_lines_after_idle": late_lines,
        "rss_mb_after_start": round(mem_start, 1),
        "rss_mb_5s_after_start": round(mem_settled, 1),
        "rss_mb_after_bench": round(mem_after, 1),
    }
    if mem_import is not None:
        out["first_cell_import_ms"] = round(first_import, 1)
        out["rss_mb_after_import_and_100_cells"] = round(mem_import, 1)
        out["rss_mb_after_import_and_100_cells_1s_idle"] = round(mem_import_idle, 1)
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
        k = json.loads(spec)
        print(json.dumps(bench(k["name"], k["trivial"], k["loop"], a.starts, a.cells, k.get("import"))), flush=True)
