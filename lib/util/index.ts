/**
 * retromae/util: small helpers with no TensorFlow.js behind them, public so
 * that the kernel and scripts share them without loading the engine.
 */
export { writeFileAtomic, replaceDirAtomic, tempDirFor, hashFile, PACKAGE_ROOT } from "./files";
export { escapeHtml } from "./html";
export { collectGarbage } from "./gc";
export { startModuleWorker } from "./worker";
export { PROGRESS_MIME } from "./mime";
export type { ProgressData } from "./mime";
