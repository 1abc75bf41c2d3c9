/**
 * `retromae kernel CONNECTION_FILE`: the process Jupyter starts.
 */
import { Kernel } from "./kernel";
import { readConnectionFile } from "./protocol/wire";

export async function runKernel(connectionFile: string | undefined): Promise<void> {
  if (!connectionFile) throw new Error("The kernel needs a connection file: retromae kernel CONNECTION_FILE (Jupyter passes it; install the kernel with retromae kernel install).");
  const info = readConnectionFile(connectionFile);
  const kernel = new Kernel(info);
  await kernel.start();
  process.on("unhandledRejection", (reason) => {
    // A background promise from a cell failed: show it in the notebook, keep the kernel alive.
    const { traceback } = kernel.describeError(reason);
    process.stderr.write(`Unhandled promise rejection:\n${traceback.join("\n")}\n`);
  });
  process.on("uncaughtException", (err) => {
    const { traceback } = kernel.describeError(err);
    process.stderr.write(`Uncaught exception:\n${traceback.join("\n")}\n`);
  });
}
