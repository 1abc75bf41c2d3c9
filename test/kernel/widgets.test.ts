/**
 * The widget protocol 2.1.0 against the real kernel process (widget_checks.py
 * through Debian's jupyter_client): comm_open with the state and version,
 * the widget view in display data, updates and echo_update, request_state,
 * the control comm's update_states, buffers and custom messages both ways,
 * messages reaching a running cell, and the trainer's panel steering a fit.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import { installKernel, pythonTests } from "./harness";

const { env, prefix } = installKernel();
const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-widgets-cwd-"));

pythonTests("widget_checks", { ...env, KERNEL_CWD: cwd }, 600_000);
test.after(() => {
  fs.rmSync(prefix, { recursive: true, force: true });
  fs.rmSync(cwd, { recursive: true, force: true });
});
test.run();
