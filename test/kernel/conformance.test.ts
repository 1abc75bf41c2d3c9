/** Debian's jupyter_kernel_test 0.4.5 (KernelTests subclass in conformance.py) against the real kernel process. */
import * as fs from "fs";
import { test } from "uvu";
import { installKernel, pythonTests } from "./harness";

const { env, prefix } = installKernel();
pythonTests("conformance", env, 300_000);
test.after(() => fs.rmSync(prefix, { recursive: true, force: true }));
test.run();
