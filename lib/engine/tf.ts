/**
 * The one place lib/ imports TensorFlow.js from.
 *
 * `@tensorflow/tfjs` rather than `@tensorflow/tfjs-core` alone: core's Node
 * build registers neither the gradients nor the chained tensor methods
 * (`x.reshape(...)`); the union package's build does, and brings the cpu
 * backend. The wasm backend is added here.
 */
import "@tensorflow/tfjs-backend-wasm";

export * from "@tensorflow/tfjs";

import { env } from "@tensorflow/tfjs";
// PROD only silences tfjs's console notices (e.g. "install our node backend");
// backend choice reports its own reasons instead.
env().set("PROD", true);
