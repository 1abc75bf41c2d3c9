"""Protocol checks beyond jupyter_kernel_test, against the real kernel process,
through Debian's jupyter_client. Run by test/kernel/protocol.test.ts (via
run_unittest.py) with JUPYTER_PATH pointing at an installed kernelspec and
KERNEL_CWD at a scratch directory holding an ESM-only package and a .ts file.
"""
import json
import os
import random
import signal
import threading
import time
import unittest
from queue import Empty

import zmq
from jupyter_client.manager import start_new_kernel
from jupyter_client.session import Session

from spec_schema import SEEN, wrap

KERNEL = os.environ.get("KERNEL_NAME", "retromae")
CWD = os.environ.get("KERNEL_CWD", os.getcwd())
HB_SECONDS = float(os.environ.get("HB_SECONDS", "10"))


def start():
    """A kernel and a client; every message the client reads is checked against the spec (spec_schema.py)."""
    km, kc = start_new_kernel(kernel_name=KERNEL, startup_timeout=60, cwd=CWD)
    return km, wrap(kc, protocol_version="5.5")


def iopub_until(kc, msg_id, stop, timeout=60):
    """iopub messages for msg_id, up to the first one for which stop(msg) is true; returns them without status messages."""
    out = []
    deadline = time.time() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if stop(msg):
            return out + ([] if msg["msg_type"] == "status" else [msg])
        if msg["msg_type"] != "status":
            out.append(msg)


def collect(kc, msg_id, timeout=60):
    """iopub messages for msg_id until its idle; returns them (without status)."""
    return iopub_until(kc, msg_id, lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle", timeout)


def wait_for_stream(kc, msg_id, text, timeout=60):
    """iopub messages for msg_id until a stream carrying text; returns them."""
    return iopub_until(kc, msg_id, lambda m: m["msg_type"] == "stream" and text in m["content"]["text"], timeout)


def shell_reply(kc, msg_id, timeout=60):
    deadline = time.time() + timeout
    while True:
        msg = kc.get_shell_msg(timeout=max(0.1, deadline - time.time()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def run(kc, code, timeout=60, **kw):
    msg_id = kc.execute(code, **kw)
    reply = shell_reply(kc, msg_id, timeout)
    outputs = collect(kc, msg_id, timeout)
    return reply, outputs


def text_of(outputs, kind="stream"):
    return "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == kind)


def result_text(outputs):
    for m in outputs:
        if m["msg_type"] == "execute_result":
            return m["content"]["data"]["text/plain"]
    return None


class OneKernel(unittest.TestCase):
    """A kernel shared by a class's checks, started once and shut down after them."""

    @classmethod
    def setUpClass(cls):
        cls.km, cls.kc = start()

    @classmethod
    def tearDownClass(cls):
        cls.kc.stop_channels()
        cls.km.shutdown_kernel(now=True)


class Shared(OneKernel):
    """Checks that share one kernel."""

    def setUp(self):
        # Drain anything left over from an earlier check.
        for get in (self.kc.get_iopub_msg, self.kc.get_shell_msg):
            while True:
                try:
                    get(timeout=0.05)
                except Empty:
                    break

    def test_10000_lines_in_order_then_idle(self):
        msg_id = self.kc.execute("for (let i = 0; i < 10000; i++) console.log(i)")
        outputs = collect(self.kc, msg_id, timeout=60)
        lines = text_of(outputs).splitlines()
        self.assertEqual(lines, [str(i) for i in range(10000)])
        self.assertEqual(shell_reply(self.kc, msg_id)["content"]["status"], "ok")

    def test_execute_input_is_sent(self):
        msg_id = self.kc.execute("1 + 2")
        outputs = collect(self.kc, msg_id)
        inputs = [m for m in outputs if m["msg_type"] == "execute_input"]
        self.assertEqual(len(inputs), 1)
        self.assertEqual(inputs[0]["content"]["code"], "1 + 2")
        count = shell_reply(self.kc, msg_id)["content"]["execution_count"]
        self.assertEqual(inputs[0]["content"]["execution_count"], count)

    def test_silent_execution(self):
        before = run(self.kc, "1")[0]["content"]["execution_count"]
        reply, out = run(self.kc, 'console.log("quiet"); 5', silent=True)
        self.assertEqual(reply["content"]["status"], "ok")
        self.assertEqual([m["msg_type"] for m in out if m["msg_type"] in ("execute_input", "execute_result")], [])
        after = run(self.kc, "2")[0]["content"]["execution_count"]
        self.assertEqual(after, before + 1)

    def test_comm_info_reply_type(self):
        msg_id = self.kc.comm_info()
        reply = shell_reply(self.kc, msg_id)
        self.assertEqual(reply["msg_type"], "comm_info_reply")
        self.assertEqual(reply["content"], {"status": "ok", "comms": {}})

    def iopub_for(self, pred, timeout=30):
        """iopub messages until one satisfies pred; returns it."""
        deadline = time.time() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
            if pred(msg):
                return msg

    def test_comms_from_the_front_end_with_buffers(self):
        reply, _ = run(self.kc, 'const seen: unknown[] = [];\ncomm.register("echo", (c, open) => {\n  seen.push(open.data);\n  c.onMsg((m) => c.send({ got: m.data, sizes: m.buffers.map((b) => b.length) }, {}, m.buffers.map((b) => b.slice().reverse())));\n  c.onClose((m) => { seen.push(["closed", m.data]); });\n});')
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        s = self.kc.session
        s.send(self.kc.shell_channel.socket, s.msg("comm_open", {"comm_id": "c1", "target_name": "echo", "data": {"hello": 1}}))
        s.send(self.kc.shell_channel.socket, s.msg("comm_msg", {"comm_id": "c1", "data": {"x": 2}}), buffers=[b"\x01\x02\x03", b"ab"])
        m = self.iopub_for(lambda m: m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == "c1")
        self.assertEqual(m["content"]["data"], {"got": {"x": 2}, "sizes": [3, 2]})
        self.assertEqual([bytes(b) for b in m["buffers"]], [b"\x03\x02\x01", b"ba"])
        info = shell_reply(self.kc, self.kc.comm_info(target_name="echo"))
        self.assertEqual(info["content"]["comms"], {"c1": {"target_name": "echo"}})
        self.assertEqual(shell_reply(self.kc, self.kc.comm_info(target_name="other"))["content"]["comms"], {})
        s.send(self.kc.shell_channel.socket, s.msg("comm_close", {"comm_id": "c1", "data": {"bye": True}}))
        _, out = run(self.kc, "JSON.stringify(seen)")
        self.assertEqual(result_text(out), """'[{"hello":1},["closed",{"bye":true}]]'""")
        self.assertEqual(shell_reply(self.kc, self.kc.comm_info())["content"]["comms"], {})

    def test_comms_from_the_kernel_outlive_their_cell(self):
        reply, out = run(self.kc, 'const got: unknown[] = [];\nconst k = comm.open("to-front-end", { n: 1 }, { m: 1 }, [new Uint8Array([9, 8])]);\nk.onMsg((m) => { got.push(m.data, Array.from(m.buffers[0])); });\nk.commId')
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        opened = [m for m in out if m["msg_type"] == "comm_open"]
        self.assertEqual(len(opened), 1)
        c = opened[0]
        self.assertEqual(c["content"]["target_name"], "to-front-end")
        self.assertEqual(c["content"]["data"], {"n": 1})
        self.assertEqual(c["metadata"], {"m": 1})
        self.assertEqual([bytes(b) for b in c["buffers"]], [b"\x09\x08"])
        comm_id = c["content"]["comm_id"]
        self.assertIn(comm_id, result_text(out))
        s = self.kc.session
        s.send(self.kc.shell_channel.socket, s.msg("comm_msg", {"comm_id": comm_id, "data": {"later": True}}), buffers=[b"\x07"])
        _, out = run(self.kc, "JSON.stringify(got)")
        self.assertEqual(result_text(out), """'[{"later":true},[7]]'""")
        reply, out = run(self.kc, "k.close({ done: 1 });\nk.isClosed")
        closes = [m for m in out if m["msg_type"] == "comm_close"]
        self.assertEqual(closes[0]["content"], {"comm_id": comm_id, "data": {"done": 1}})
        self.assertEqual(result_text(out), "true")

    def test_broadcast_sends_raw_iopub_messages(self):
        reply, out = run(self.kc, 'jupyter.broadcast("display_data", { data: { "text/plain": "raw" }, metadata: {}, transient: { display_id: "r1" } });\njupyter.broadcast("update_display_data", { data: { "text/plain": "raw 2" }, metadata: {}, transient: { display_id: "r1" } }, { buffers: [new Uint8Array([1])] });')
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        kinds = [(m["msg_type"], m["content"]["data"]["text/plain"]) for m in out if m["msg_type"] in ("display_data", "update_display_data")]
        self.assertEqual(kinds, [("display_data", "raw"), ("update_display_data", "raw 2")])
        self.assertTrue(all(m["parent_header"]["msg_id"] == reply["parent_header"]["msg_id"] for m in out))
        bad, _ = run(self.kc, 'jupyter.broadcast("", {})')
        self.assertEqual(bad["content"]["status"], "error")
        self.assertIn("needs a message type", bad["content"]["evalue"])

    def test_comm_open_unknown_target_is_closed(self):
        msg = self.kc.session.msg("comm_open", {"comm_id": "abc123", "target_name": "nobody", "data": {}})
        self.kc.shell_channel.send(msg)
        outputs = collect(self.kc, msg["header"]["msg_id"])
        closes = [m for m in outputs if m["msg_type"] == "comm_close"]
        self.assertEqual(len(closes), 1)
        self.assertEqual(closes[0]["content"]["comm_id"], "abc123")

    def test_stop_on_error_aborts_queued_cells(self):
        first = self.kc.execute('await new Promise((r) => setTimeout(r, 300)); throw new Error("first fails")')
        second = self.kc.execute("globalThis.secondRan = true")
        self.assertEqual(shell_reply(self.kc, first)["content"]["status"], "error")
        self.assertEqual(shell_reply(self.kc, second)["content"]["status"], "aborted")
        collect(self.kc, first)
        collect(self.kc, second)  # its busy and idle come after the failed cell's idle
        _, out = run(self.kc, "typeof (globalThis as any).secondRan")
        self.assertEqual(result_text(out), "'undefined'")

    def test_type_error_blocks_the_cell(self):
        reply, out = run(self.kc, "(globalThis as any).sideEffect = 1;\nconst s: string = 5;")
        self.assertEqual(reply["content"]["status"], "error")
        err = [m for m in out if m["msg_type"] == "error"][0]["content"]
        self.assertIn("line 2", err["evalue"])
        self.assertIn("column 7", err["evalue"])
        self.assertIn("not assignable", err["evalue"])
        _, out = run(self.kc, "typeof (globalThis as any).sideEffect")
        self.assertEqual(result_text(out), "'undefined'")

    def test_runtime_traceback_points_at_cell_lines(self):
        run(self.kc, "function explode(n: number): number {\n  if (n > 1) {\n    throw new RangeError(`too big: ${n}`);\n  }\n  return n;\n}")
        reply, out = run(self.kc, "const ok = 1;\n\nexplode(ok + 5);")
        c = reply["content"]
        self.assertEqual((c["status"], c["ename"], c["evalue"]), ("error", "RangeError", "too big: 6"))
        tb = "\n".join(c["traceback"])
        self.assertIn("line 3, column 11", tb)  # the throw, in the cell that defined explode
        self.assertIn("line 3, column 1", tb)  # the call
        self.assertNotIn("/kernel/", tb)
        self.assertNotIn("node:internal", tb)

    def test_declarations_persist_and_redeclare(self):
        run(self.kc, "const alpha = 1;\nlet beta = 2;\nclass Gamma { v = 3 }\nfunction delta() { return 4 }\nenum Color { Red, Green }")
        _, out = run(self.kc, "beta += 1;\n[alpha, beta, new Gamma().v, delta(), Color.Green]")
        self.assertEqual(result_text(out), "[ 1, 3, 3, 4, 1 ]")
        reply, out = run(self.kc, 'const alpha = "again";\nalpha.toUpperCase()')
        self.assertEqual(reply["content"]["status"], "ok")
        self.assertEqual(result_text(out), "'AGAIN'")
        _, out = run(self.kc, "alpha.length")
        self.assertEqual(result_text(out), "5")

    def test_top_level_await(self):
        _, out = run(self.kc, "const waited = await new Promise<number>((r) => setTimeout(() => r(42), 20));\nwaited + 1")
        self.assertEqual(result_text(out), "43")

    def test_imports_esm_package_and_relative_ts(self):
        reply, out = run(self.kc, 'import { hello } from "esm-only";\nimport { twice } from "./helper";\nimport * as fflate from "fflate";\n[hello(), twice(21), typeof fflate.gzipSync]')
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        self.assertEqual(result_text(out), "[ 'hi from esm', 42, 'function' ]")

    def test_dynamic_import_resolves_as_a_static_import(self):
        # the same modules, side by side: an ESM-only package, a relative .ts file, a CommonJS package, a builtin, retromae
        static = ('import { hello } from "esm-only";\nimport { twice } from "./helper";\nimport * as fflate from "fflate";\n'
                  'import * as nodePath from "node:path";\nimport { RetroMAE } from "retromae";\n')
        dynamic = ('const esm = await import("esm-only");\nconst helper = await import("./helper");\nconst ff = await import("fflate");\n'
                   'const p = await import("node:path");\nconst lib = await import("retromae");\n')
        reply, out = run(self.kc, static + dynamic + "[esm.hello === hello, helper.twice === twice, ff.gzipSync === fflate.gzipSync, p.join === nodePath.join, p.default === nodePath, lib.RetroMAE === RetroMAE, Object.prototype.toString.call(p)]", timeout=120)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        self.assertEqual(result_text(out), "[ true, true, true, true, true, true, '[object Module]' ]")
        # import() inside a function a cell defines, called by a later cell; a missing module gets the static import's sentence
        reply, _ = run(self.kc, "async function later(spec: string) {\n  return import(spec);\n}")
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        reply, out = run(self.kc, '(await later("./helper")).twice(4)')
        self.assertEqual(result_text(out), "8")
        reply, _ = run(self.kc, 'await import("no-such-package")')  # the checker refuses it, as a static import
        self.assertIn("Cannot find module 'no-such-package'", reply["content"]["evalue"])
        reply, _ = run(self.kc, 'await later("no-such-package")')  # at run time, the static import's sentence
        self.assertEqual(reply["content"]["status"], "error")
        self.assertIn('Cannot find module "no-such-package" from', reply["content"]["evalue"])
        self.assertIn("install it with npm (npm install no-such-package)", reply["content"]["evalue"])

    def test_retromae_import_and_tensor_result(self):
        reply, out = run(self.kc, 'import { tf } from "retromae";\ntf.tensor([[1, 2], [3, 4]])', timeout=120)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        text = result_text(out)
        self.assertIn("Tensor float32 [2, 2]", text)
        self.assertIn("min 1", text)
        self.assertIn("mean 2.5000", text)
        self.assertIn("max 4", text)

    def test_completion_and_inspect_use_types(self):
        run(self.kc, 'import { RetroMAE } from "retromae";\nconst model = RetroMAE.create("tiny", { seed: 1 });', timeout=120)
        code = "model."
        reply = shell_reply(self.kc, self.kc.complete(code, len(code)))
        matches = reply["content"]["matches"]
        for m in ("encode", "losses", "forwardBackward"):
            self.assertIn(m, matches)
        self.assertEqual(reply["content"]["cursor_start"], len(code))
        code = "model.encode"
        reply = shell_reply(self.kc, self.kc.inspect(code, len(code)))
        self.assertTrue(reply["content"]["found"])
        text = reply["content"]["data"]["text/plain"]
        self.assertIn("encode(inputIds", text)
        self.assertIn("[CLS]", text)  # the doc comment

    def test_display_update_keeps_the_id(self):
        _, out = run(self.kc, 'const h = display.markdown("step 1");\nh.update("step 2");')
        first = [m for m in out if m["msg_type"] == "display_data"][0]
        update = [m for m in out if m["msg_type"] == "update_display_data"][0]
        self.assertEqual(first["content"]["transient"]["display_id"], update["content"]["transient"]["display_id"])
        self.assertEqual(update["content"]["data"]["text/markdown"], "step 2")

    def test_library_display_seam(self):
        code = 'import { display as show, PlotlyFigure } from "retromae";\nconst chart = show(new PlotlyFigure([{ y: [1, 2] }], {}, "chart"));\nchart.update(new PlotlyFigure([{ y: [1, 2, 3] }], {}, "chart"));'
        reply, out = run(self.kc, code, timeout=120)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        shown = [m for m in out if m["msg_type"] == "display_data"]
        updated = [m for m in out if m["msg_type"] == "update_display_data"]
        self.assertTrue(shown and updated)
        data = shown[0]["content"]["data"]
        self.assertIn("application/vnd.plotly.v1+json", data)
        self.assertIn("text/html", data)
        self.assertEqual(updated[-1]["content"]["data"]["application/vnd.plotly.v1+json"]["data"][0]["y"], [1, 2, 3])

    def test_history_search_and_range(self):
        run(self.kc, "const historyMarker = 123")
        reply = shell_reply(self.kc, self.kc.history(hist_access_type="search", pattern="*historyMarker*", output=False, raw=True))
        self.assertTrue(any("historyMarker" in h[2] for h in reply["content"]["history"]))

    def test_input_request(self):
        msg_id = self.kc.execute('const answer = await input("name? ");\nconsole.log(`hello ${answer}`)', allow_stdin=True)
        req = self.kc.get_stdin_msg(timeout=30)
        self.assertEqual(req["msg_type"], "input_request")
        self.assertEqual(req["content"]["prompt"], "name? ")
        self.kc.input("ada")
        self.assertEqual(shell_reply(self.kc, msg_id)["content"]["status"], "ok")
        self.assertIn("hello ada", text_of(collect(self.kc, msg_id)))

    def test_iopub_welcome_for_each_new_subscriber(self):
        # JEP 65: iopub is an XPUB socket; every new subscriber gets an iopub_welcome.
        ctx = zmq.Context.instance()
        # The welcome goes to every subscriber, our client's iopub too: read it with a session of our own,
        # or the client's session would see the same signature twice (its replay check).
        own = Session(key=self.kc.session.key, signature_scheme=self.kc.session.signature_scheme)
        for _ in range(2):
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(f"tcp://{self.km.ip}:{self.km.iopub_port}")
            deadline = time.time() + 10
            welcome = None
            while welcome is None and time.time() < deadline:
                if sub.poll(500):
                    idents, frames = own.feed_identities(sub.recv_multipart())
                    msg = own.deserialize(frames)
                    if msg["header"]["msg_type"] == "iopub_welcome":
                        welcome = msg
            sub.close()
            self.assertIsNotNone(welcome, "no iopub_welcome within 10 s")
            self.assertEqual(welcome["content"], {"subscription": ""})
            self.assertEqual(welcome["parent_header"], {})

    def test_kernel_info_fields_have_the_spec_types(self):
        reply = shell_reply(self.kc, self.kc.kernel_info(), timeout=30)
        c = reply["content"]
        mode = c["language_info"]["codemirror_mode"]
        # A string, or a dict with a name and an integer version (what strict clients such as runtimelib accept).
        self.assertTrue(isinstance(mode, str) or (isinstance(mode, dict) and isinstance(mode.get("name"), str) and set(mode) <= {"name", "version"} and isinstance(mode.get("version", 0), int)), mode)
        self.assertIsInstance(c["supported_features"], list)
        self.assertEqual(reply["header"]["version"], c["protocol_version"])

    def test_web_dialogs_over_stdin(self):
        code = 'const name = await prompt("name?", "nobody");\nconst sure = await confirm("sure?");\nawait alert("done");\nconsole.log(JSON.stringify([name, sure]))'
        msg_id = self.kc.execute(code, allow_stdin=True)
        for want, answer in (("name? ", ""), ("sure? [y/N] ", "yes"), ("done [Enter] ", "")):
            req = self.kc.get_stdin_msg(timeout=30)
            self.assertEqual(req["content"]["prompt"], want)
            self.kc.input(answer)
        self.assertEqual(shell_reply(self.kc, msg_id)["content"]["status"], "ok")
        self.assertIn('["nobody",true]', text_of(collect(self.kc, msg_id)))

    def test_web_dialogs_without_stdin_are_cancelled(self):
        reply, out = run(self.kc, 'const p = await prompt("x");\nconst c = await confirm("y");\nawait alert("note");\nJSON.stringify([p, c])', allow_stdin=False)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        self.assertEqual(result_text(out), "'[null,false]'")
        self.assertIn("note", text_of(out))

    def test_input_without_stdin_is_one_clear_error(self):
        reply, _ = run(self.kc, 'await input("x")', allow_stdin=False)
        self.assertEqual(reply["content"]["status"], "error")
        self.assertIn("allow_stdin is false", reply["content"]["evalue"])

    def test_interrupts_keep_state(self):
        run(self.kc, "const keep = 'kept';")
        cells = {
            "sync loop": "let spins = 0;\nwhile (true) { spins++; }",
            "pending await": "await new Promise(() => {});",
            "async loop": "let ticks = 0;\nwhile (true) {\n  await new Promise((r) => setTimeout(r, 5));\n  ticks++;\n}",
            "sync loop in a function": "function spin() { for (;;) {} }\nspin();",
            # No loop of the cell's own: only SIGINT breaks the engine's sort. A real sort of 4e6 numbers (10.1 s here), so
            # a kernel that waited for it would fail the bound. (It was 3e7 numbers in reverse order: a 240 MB array, built in
            # 1.8 s and sorted in 1.4 s, and the bound failed once, by 4 ms, on a loaded machine.)
            "sync code without guards": "const big = Array.from({ length: 4e6 }, (_, i) => i);\nbig.sort((x, y) => Math.sin(x) - Math.sin(y));",
        }
        for how in ("message", "SIGINT"):
            for name, code in cells.items():
                with self.subTest(how=how, cell=name):
                    msg_id = self.kc.execute(code)
                    time.sleep(0.5)
                    t0 = time.time()
                    if how == "message":
                        self.km.interrupt_kernel()
                    else:
                        os.kill(self.km.provisioner.process.pid, signal.SIGINT)
                    reply = shell_reply(self.kc, msg_id, timeout=10)
                    elapsed = time.time() - t0
                    collect(self.kc, msg_id)
                    self.assertEqual(reply["content"]["status"], "error")
                    self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")
                    self.assertLess(elapsed, 1.0, f"{name} by {how} took {elapsed:.2f}s")
                    _, out = run(self.kc, "keep")
                    self.assertEqual(result_text(out), "'kept'")

    def test_message_interrupts_never_reach_the_next_cell(self):
        # A loop stopped by the flag used to leave its SIGINT in flight, which then interrupted the next cell (4 in 40 here).
        run(self.kc, "const kept = 'still here';")
        for i in range(15):
            msg_id = self.kc.execute("function spin() { for (;;) {} }\nspin();")
            time.sleep(0.2)
            self.km.interrupt_kernel()
            self.assertEqual(shell_reply(self.kc, msg_id, timeout=10)["content"]["ename"], "KeyboardInterrupt")
            collect(self.kc, msg_id)
            reply, out = run(self.kc, "kept")
            self.assertEqual(reply["content"]["status"], "ok", f"round {i}: {reply['content']}")
            self.assertEqual(result_text(out), "'still here'")

    def test_interrupt_aborts_the_signal(self):
        msg_id = self.kc.execute('import { currentSignal } from "retromae";\nconst watched = currentSignal()!;\nconsole.log("waiting");\nawait new Promise(() => {});', )
        # Interrupt once the cell runs (not while it is still being checked, which a loaded machine makes slow).
        out = wait_for_stream(self.kc, msg_id, "waiting")
        self.km.interrupt_kernel()
        shell_reply(self.kc, msg_id, timeout=10)
        collect(self.kc, msg_id)
        _, out = run(self.kc, "watched.aborted")
        self.assertEqual(result_text(out), "true")

    def test_heartbeat_during_long_synchronous_computation(self):
        ctx = zmq.Context.instance()
        hb = ctx.socket(zmq.REQ)
        hb.setsockopt(zmq.LINGER, 0)
        hb.connect(f"tcp://{self.km.ip}:{self.km.hb_port}")
        msg_id = self.kc.execute(f"const t0 = Date.now();\nwhile (Date.now() - t0 < {int(HB_SECONDS * 1000)}) {{}}")
        worst = 0.0
        end = time.time() + HB_SECONDS - 1
        time.sleep(0.5)
        while time.time() < end:
            t = time.time()
            hb.send(b"ping")
            self.assertTrue(hb.poll(1000), "the heartbeat did not answer within 1 s")
            self.assertEqual(hb.recv(), b"ping")
            worst = max(worst, time.time() - t)
            time.sleep(0.5)
        hb.close()
        self.assertEqual(shell_reply(self.kc, msg_id, timeout=HB_SECONDS + 30)["content"]["status"], "ok")
        collect(self.kc, msg_id)
        print(f"heartbeat worst round trip during {HB_SECONDS:.0f}s sync loop: {worst * 1000:.1f} ms")

    def test_bad_signature_is_dropped(self):
        forged = Session(key=b"not-the-key", session=self.kc.session.session)
        msg = forged.msg("execute_request", {"code": "(globalThis as any).forged = 1", "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        forged.send(self.kc.shell_channel.socket, msg)
        time.sleep(0.5)
        _, out = run(self.kc, "typeof (globalThis as any).forged")
        self.assertEqual(result_text(out), "'undefined'")

    def test_binds_only_to_connection_ip(self):
        pid = self.km.provisioner.process.pid
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        listening = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                        listening.append(parts[1])
        self.assertEqual(len(listening), 5, listening)
        for addr in listening:
            self.assertEqual(addr.split(":")[0], "0100007F", f"listening on {addr}, not 127.0.0.1")

    def test_user_expressions(self):
        reply, _ = run(self.kc, "const ue = 20", user_expressions={"double": "ue * 2", "bad": "nope.x"})
        ue = reply["content"]["user_expressions"]
        self.assertEqual(ue["double"]["status"], "ok")
        self.assertEqual(ue["double"]["data"]["text/plain"], "40")
        self.assertEqual(ue["bad"]["status"], "error")


    def test_zz_every_message_read_was_checked_against_the_spec(self):
        # Runs last in this class: by now the tests above have read every kind of message.
        for kind in ("iopub:status", "iopub:stream", "iopub:execute_input", "iopub:execute_result", "iopub:display_data", "iopub:update_display_data", "iopub:error", "shell:execute_reply", "shell:kernel_info_reply", "shell:complete_reply", "shell:inspect_reply", "stdin:input_request"):
            self.assertIn(kind, SEEN, f"no {kind} message was read, so none was checked")
        print("messages checked against the spec: " + json.dumps(SEEN, sort_keys=True))


class Fuzz(unittest.TestCase):
    """10,000 random and mutated messages, then the kernel still answers and executes."""

    def test_random_and_mutated_messages(self):
        km, kc = start()
        try:
            rng = random.Random(1234)
            ctx = zmq.Context.instance()
            socks = []
            for port in (km.shell_port, km.control_port, km.stdin_port):
                s = ctx.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                s.connect(f"tcp://{km.ip}:{port}")
                socks.append(s)
            session = Session(key=km.session.key, session="fuzzer")
            types = ["execute_request", "kernel_info_request", "complete_request", "inspect_request", "history_request", "is_complete_request", "comm_info_request", "comm_open", "comm_msg", "no_such_request", "", "interrupt_request"]
            values = [None, 0, -1, 2**53, "", "x" * 1000, [], {}, [1, "a"], {"a": None}, True, 1.5, "\u0000\ud7ff", "`unterminated"]

            def random_content():
                return {rng.choice(["code", "cursor_pos", "detail_level", "hist_access_type", "n", "pattern", "comm_id", "target_name", "data", "restart"]): rng.choice(values) for _ in range(rng.randint(0, 4))}

            for i in range(10000):
                kind = rng.random()
                sock = rng.choice(socks)
                if kind < 0.3:  # raw garbage frames
                    sock.send_multipart([bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))) for _ in range(rng.randint(1, 8))])
                elif kind < 0.5:  # bad JSON behind a correct delimiter and signature
                    parts = [b"{", b"{}", b"[]", b"null"]
                    frames = [rng.choice([b"{not json", b"[]", b"42", b'{"msg_type": 5}']) for _ in range(4)]
                    sig = session.sign(frames) if rng.random() < 0.5 else b"bad"
                    sock.send_multipart([b"<IDS|MSG>", sig] + frames + rng.choice([[], parts]))
                else:  # well-formed and signed, odd types and contents (never shutdown or execute)
                    msg = session.msg(rng.choice(types), random_content())
                    frames = session.serialize(msg)
                    if rng.random() < 0.3:  # mutate a frame after signing
                        j = rng.randrange(len(frames))
                        b = bytearray(frames[j])
                        if b:
                            b[rng.randrange(len(b))] ^= 0xFF
                        frames[j] = bytes(b)
                    sock.send_multipart(frames)
            time.sleep(1.0)
            reply = kc.kernel_info(reply=True, timeout=30)
            self.assertEqual(reply["content"]["status"], "ok")
            reply, out = run(kc, "6 * 7", timeout=60)
            self.assertEqual(reply["content"]["status"], "ok")
            self.assertEqual(result_text(out), "42")
            for s in socks:
                s.close()
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


class Lifecycle(unittest.TestCase):
    def test_restart_and_shutdown(self):
        km, kc = start()
        try:
            run(kc, "const before = 1")
            km.restart_kernel(now=False)
            kc.wait_for_ready(timeout=60)
            reply, out = run(kc, "typeof (globalThis as any).before")
            self.assertEqual(result_text(out), "'undefined'")
            msg_id = kc.shutdown(restart=False)
            reply = kc.get_control_msg(timeout=10)
            self.assertEqual(reply["msg_type"], "shutdown_reply")
            self.assertEqual(reply["content"]["restart"], False)
            km.provisioner.process.wait(timeout=10)
            self.assertFalse(km.is_alive())
        finally:
            kc.stop_channels()
            if km.is_alive():
                km.shutdown_kernel(now=True)


if __name__ == "__main__":
    unittest.main()
