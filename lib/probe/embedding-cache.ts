/**
 * The vectors the last probeHook of a trainer encoded, kept until its next
 * probe, so that other hooks of the same step (geometryHook) need not encode
 * the corpus again.
 */
import type { ProbeSet } from "./probe";

interface ProbeEmbeddings {
  step: number;
  set: ProbeSet;
  maxLength: number;
  queryMaxLength: number;
  docs: Float32Array;
  queries: Float32Array;
}
const lastEmbeddings = new WeakMap<object, ProbeEmbeddings>();

/** Keep a probe's unnormalised vectors for the trainer's current step. */
export function rememberProbeEmbeddings(trainer: { step: number }, e: Omit<ProbeEmbeddings, "step">): void {
  lastEmbeddings.set(trainer, { ...e, step: trainer.step });
}

export function forgetProbeEmbeddings(trainer: object): void {
  lastEmbeddings.delete(trainer);
}

/** The probe's vectors of `set` at the trainer's current step, if a probeHook encoded them with these lengths. */
export function cachedProbeEmbeddings(trainer: { step: number }, set: ProbeSet, lengths: { maxLength: number; queryMaxLength: number }): { docs: Float32Array; queries: Float32Array } | null {
  const e = lastEmbeddings.get(trainer);
  if (!e || e.step !== trainer.step || e.set !== set || e.maxLength !== lengths.maxLength || e.queryMaxLength !== lengths.queryMaxLength) return null;
  return { docs: e.docs, queries: e.queries };
}
