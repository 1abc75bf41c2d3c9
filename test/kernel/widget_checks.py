"""Widget protocol 2.1.0 against the real kernel process, through Debian's
jupyter_client playing the front end's widget manager. Run by
test/kernel/widgets.test.ts (via run_unittest.py) with JUPYTER_PATH
pointing at an installed kernelspec.
"""
import json
import re
import os
import time
import unittest
from queue import Empty

from protocol_checks import OneKernel, collect, result_text, run, shell_reply

CWD = os.environ.get("KERNEL_CWD", os.getcwd())


class Widgets(OneKernel):
    def setUp(self):
        while True:
            try:
                self.kc.get_iopub_msg(timeout=0.05)
            except Empty:
                break

    def send(self, msg_type, content, buffers=None):
        s = self.kc.session
        msg = s.msg(msg_type, content)
        s.send(self.kc.shell_channel.socket, msg, buffers=buffers or [])
        return msg["header"]["msg_id"]

    def comm_msgs(self, pred, timeout=30):
        deadline = time.time() + timeout
        while True:
            m = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
            if m["msg_type"] == "comm_msg" and pred(m):
                return m

    def move_slider_then_stop(self, mid, slider, value, stop, after_step=1):
        """Once cell `mid`'s fit has reached step `after_step` (the panel's status line says so), move `slider`
        to `value` and click `stop`; the cell must end ok. Returns its value's text, without spaces or line breaks."""
        def reached(m):
            if m["content"]["data"].get("method") != "update":
                return False
            steps = re.findall(r"<b>step (\d+)", json.dumps(m["content"]["data"].get("state", {})))
            return any(int(k) >= after_step for k in steps)
        self.comm_msgs(reached, timeout=120)
        self.send("comm_msg", {"comm_id": slider, "data": {"method": "update", "state": {"value": value}, "buffer_paths": []}})
        time.sleep(1.0)
        self.send("comm_msg", {"comm_id": stop, "data": {"method": "custom", "content": {"event": "click"}}})
        outputs = collect(self.kc, mid, timeout=120)
        self.assertEqual(shell_reply(self.kc, mid)["content"]["status"], "ok")
        return result_text(outputs).replace("\n", "").replace(" ", "")

    def test_1_open_display_update_echo_request_state(self):
        reply, out = run(self.kc, 'import { FloatSlider } from "retromae";\nconst s = new FloatSlider({ description: "enc", value: 0.3, max: 0.95, step: 0.01 });\nconst seen: number[] = [];\ns.observe("value", (c) => { seen.push(c.new); });\ns', timeout=120)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        opens = [m for m in out if m["msg_type"] == "comm_open"]
        self.assertEqual([m["content"]["target_name"] for m in opens], ["jupyter.widget"] * 3)
        self.assertTrue(all(m["metadata"] == {"version": "2.1.0"} for m in opens))
        layout, style, slider = opens
        st = slider["content"]["data"]["state"]
        self.assertEqual((st["_model_name"], st["_model_module"], st["_model_module_version"], st["value"]), ("FloatSliderModel", "@jupyter-widgets/controls", "2.0.0", 0.3))
        self.assertEqual(st["layout"], "IPY_MODEL_" + layout["content"]["comm_id"])
        self.assertEqual(st["style"], "IPY_MODEL_" + style["content"]["comm_id"])
        self.assertEqual(slider["content"]["data"]["buffer_paths"], [])
        sid = slider["content"]["comm_id"]
        result = [m for m in out if m["msg_type"] == "execute_result"][0]["content"]["data"]
        self.assertEqual(result["application/vnd.jupyter.widget-view+json"], {"model_id": sid, "version_major": 2, "version_minor": 1})
        self.assertTrue(result["text/plain"].startswith("FloatSlider(value=0.3"))
        info = shell_reply(self.kc, self.kc.comm_info(target_name="jupyter.widget"))["content"]["comms"]
        self.assertEqual(info[sid], {"target_name": "jupyter.widget"})
        # the front end moves it: the kernel echoes the update, answering that message, and observers see it
        mid = self.send("comm_msg", {"comm_id": sid, "data": {"method": "update", "state": {"value": 0.5}, "buffer_paths": []}})
        echo = self.comm_msgs(lambda m: m["content"]["comm_id"] == sid)
        self.assertEqual(echo["content"]["data"], {"method": "echo_update", "state": {"value": 0.5}, "buffer_paths": []})
        self.assertEqual(echo["parent_header"]["msg_id"], mid)
        self.assertEqual(result_text(run(self.kc, "seen")[1]), "[ 0.5 ]")
        # the kernel moves it: an update goes out
        reply, out = run(self.kc, "s.value = 0.7;")
        updates = [m["content"]["data"] for m in out if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == sid]
        self.assertEqual(updates, [{"method": "update", "state": {"value": 0.7}, "buffer_paths": []}])
        # request_state: the whole state
        self.send("comm_msg", {"comm_id": sid, "data": {"method": "request_state"}})
        full = self.comm_msgs(lambda m: m["content"]["comm_id"] == sid)["content"]["data"]
        self.assertEqual((full["method"], full["state"]["value"], full["state"]["_model_name"]), ("update", 0.7, "FloatSliderModel"))

    def test_2_control_comm_restores_every_widget_in_one_message(self):
        run(self.kc, 'import { Text } from "retromae";\nconst t = new Text({ value: "hello" });', timeout=120)
        self.send("comm_open", {"comm_id": "ctl", "target_name": "jupyter.widget.control", "data": {}})
        self.send("comm_msg", {"comm_id": "ctl", "data": {"method": "request_states"}})
        m = self.comm_msgs(lambda m: m["content"]["comm_id"] == "ctl")
        data = m["content"]["data"]
        self.assertEqual(data["method"], "update_states")
        names = [s["_model_name"] for s in data["states"].values()]
        self.assertIn("TextModel", names)
        self.assertIn("LayoutModel", names)
        self.assertEqual([s["value"] for s in data["states"].values() if s["_model_name"] == "TextModel"][-1], "hello")

    def test_3_buffers_both_ways_and_custom_messages_round_trip(self):
        reply, out = run(self.kc, 'import { anywidget } from "retromae";\nconst w = anywidget({ esm: "export function render({ model, el }) {}", data: new Uint8Array([1, 2, 3]) });\nw.onMsg((content, buffers) => { w.send({ pong: content, sizes: buffers.map((b) => b.length) }, [new Uint8Array([7])]); });\nw.id', timeout=120)
        wid = json.loads(result_text(out).replace("'", '"'))
        opened = [m for m in out if m["msg_type"] == "comm_open" and m["content"]["comm_id"] == wid][0]
        self.assertEqual(opened["content"]["data"]["buffer_paths"], [["data"]])
        self.assertEqual([bytes(b) for b in opened["buffers"]], [b"\x01\x02\x03"])
        self.assertEqual(opened["content"]["data"]["state"]["_model_name"], "AnyModel")
        self.send("comm_msg", {"comm_id": wid, "data": {"method": "update", "state": {}, "buffer_paths": [["data"]]}}, buffers=[b"\x09\x08"])
        echo = self.comm_msgs(lambda m: m["content"]["comm_id"] == wid)
        self.assertEqual(echo["content"]["data"]["buffer_paths"], [["data"]])
        self.assertEqual([bytes(b) for b in echo["buffers"]], [b"\x09\x08"])
        self.assertEqual(result_text(run(self.kc, 'Array.from(w.get("data") as Uint8Array)')[1]), "[ 9, 8 ]")
        self.send("comm_msg", {"comm_id": wid, "data": {"method": "custom", "content": {"ping": 1}}}, buffers=[b"abc"])
        pong = self.comm_msgs(lambda m: m["content"]["comm_id"] == wid and m["content"]["data"].get("method") == "custom")
        self.assertEqual(pong["content"]["data"]["content"], {"pong": {"ping": 1}, "sizes": [3]})
        self.assertEqual([bytes(b) for b in pong["buffers"]], [b"\x07"])

    def test_4_a_click_and_a_slider_reach_a_running_cell(self):
        reply, out = run(self.kc, 'import { Button, IntSlider } from "retromae";\nconst b = new Button({ description: "go" });\nconst n = new IntSlider({ value: 1 });\nlet clicks = 0;\nlet got = -1;\nb.onClick(() => { clicks++; });\nn.observe("value", (c) => { got = c.new as number; });\n[b.id, n.id].join(" ")', timeout=120)
        bid, nid = result_text(out).strip("'").split(" ")
        # a cell that waits for the widgets; the messages arrive while it runs
        mid = self.kc.execute("for (let i = 0; i < 500 && (got < 0 || clicks === 0); i++) await new Promise((r) => setTimeout(r, 10));\n[got, clicks]")
        time.sleep(0.3)
        cm = self.send("comm_msg", {"comm_id": nid, "data": {"method": "update", "state": {"value": 42}, "buffer_paths": []}})
        self.send("comm_msg", {"comm_id": bid, "data": {"method": "custom", "content": {"event": "click"}}})
        outputs = collect(self.kc, mid, timeout=60)
        self.assertEqual(shell_reply(self.kc, mid)["content"]["status"], "ok")
        self.assertEqual(result_text(outputs), "[ 42, 1 ]")

    def test_5_the_trainer_panel_steers_a_fit_in_a_later_cell(self):
        setup = ('import { RetroMAE, Trainer, BertTokenizer, PackedCorpus, Rng, readSettingsHistory } from "retromae";\n'
                 'const tok = BertTokenizer.bertBaseUncased();\n'
                 'const texts = Array.from({ length: 40 }, (_, i) => `the cell ${i} divides and the protein folds into a shape number ${i}`);\n'
                 'const data = PackedCorpus.fromTexts(texts, tok, 32);\n'
                 'const rng = new Rng(3);\n'
                 'const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });\n'
                 f'const trainer = new Trainer({{ model, tokenizer: tok, data, rng, batchSize: 4, maxLength: 32, lr: 1e-3, runDir: {json.dumps(os.path.join(CWD, "panel-run"))} }});\n'
                 'const panel = trainer.controls();\n'
                 'panel.encoderSlider.id + " " + panel.stopButton.id')
        reply, out = run(self.kc, setup, timeout=180)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        enc, stop = result_text(out).strip("'").split(" ")
        self.assertTrue(any(m["msg_type"] == "display_data" or m["msg_type"] == "execute_result" for m in out))
        mid = self.kc.execute("const r = await trainer.fit({ steps: 100000, live: false });\n[r.status, trainer.encoderMaskRatio, readSettingsHistory(trainer.run!.dir).map((c) => [c.field, c.new, c.source])]")
        self.assertEqual(self.move_slider_then_stop(mid, enc, 0.45, stop), "['stopped',0.45,[['encoderMaskRatio',0.45,'panel']]]")

    def test_6_on_webgpu_the_panel_and_the_interrupt_steer_a_queued_ahead_fit(self):
        # Dawn's Null backend: a WebGPU device that validates every command and computes nothing, so the
        # GPU's paths (steps queued ahead, replayed, read a step behind) run in a kernel without a GPU.
        setup = ('import { backend, RetroMAE, Trainer, BertTokenizer, PackedCorpus, Rng, readSettingsHistory } from "retromae";\n'
                 'process.env.RETROMAE_WEBGPU_ADAPTER = "null-backend";\n'
                 'const gpu = await backend.use("webgpu");\n'
                 'const tok2 = BertTokenizer.bertBaseUncased();\n'
                 'const data2 = PackedCorpus.fromTexts(Array.from({ length: 40 }, (_, i) => `the cell ${i} divides and the protein folds into a shape number ${i}`), tok2, 16);\n'
                 'const rng2 = new Rng(5);\n'
                 'const model2 = RetroMAE.create("tiny", { rng: rng2, overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });\n'
                 f'const gpuTrainer = new Trainer({{ model: model2, tokenizer: tok2, data: data2, rng: rng2, batchSize: 2, maxLength: 16, lr: 1e-3, runDir: {json.dumps(os.path.join(CWD, "gpu-panel-run"))} }});\n'
                 'const gpuPanel = gpuTrainer.controls();\n'
                 'gpu.backend + " " + gpuPanel.encoderSlider.id + " " + gpuPanel.stopButton.id')
        reply, out = run(self.kc, setup, timeout=180)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        name, enc, stop = result_text(out).strip("'").split(" ")
        self.assertEqual(name, "webgpu")
        mid = self.kc.execute("const g = await gpuTrainer.fit({ steps: 100000, live: false });\n[g.status, gpuTrainer.encoderMaskRatio, readSettingsHistory(gpuTrainer.run!.dir).map((c) => [c.field, c.new, c.source]), gpuTrainer.recordedSteps!.replayed > 0]")
        # (a replay begins after three steps through tfjs: the slider moves once one has run, however slow the machine)
        self.assertEqual(self.move_slider_then_stop(mid, enc, 0.15, stop, after_step=5), "['stopped',0.15,[['encoderMaskRatio',0.15,'panel']],true]")
        # the interrupt button: the fit stops after the step already queued, and the next cell trains on
        _, before = run(self.kc, "gpuTrainer.step")
        mid = self.kc.execute("const h = await gpuTrainer.fit({ steps: 100000, live: false });\nh.status")
        time.sleep(2.0)
        self.km.interrupt_kernel()
        reply = shell_reply(self.kc, mid, timeout=60)
        collect(self.kc, mid, timeout=60)
        self.assertEqual(reply["content"].get("ename"), "KeyboardInterrupt", "an interrupted cell reads so, as on the CPU backends")
        reply2, out2 = run(self.kc, "const k = await gpuTrainer.fit({ steps: 3, live: false });\n[k.status, k.stepsTaken, gpuTrainer.step > " + result_text(before) + "]", timeout=120)
        self.assertEqual(reply2["content"]["status"], "ok", reply2["content"])
        self.assertEqual(result_text(out2).replace("\n", "").replace(" ", ""), "['done',3,true]")


if __name__ == "__main__":
    unittest.main()
