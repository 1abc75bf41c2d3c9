/**
 * A RetroMAE batch as safetensors, with the official collator's key names
 * (encoder_input_ids, attention_mask, encoder_labels, decoder_input_ids,
 * decoder_attention_mask, decoder_labels), so the PyTorch reference and the
 * official trainer's code can read it.
 */
import type { NamedArray } from "../model/safetensors";
import { readSafetensors, writeSafetensors } from "../model/safetensors";
import type { RetroMAEBatch } from "./batch";

export function saveBatch(file: string, b: RetroMAEBatch): void {
  const B = b.batchSize;
  const L = b.seqLength;
  const i32 = (data: Int32Array, shape: number[]): NamedArray => ({ dtype: "I32", shape, data });
  writeSafetensors(
    file,
    new Map<string, NamedArray>([
      ["encoder_input_ids", i32(b.encoderInputIds, [B, L])],
      ["attention_mask", i32(b.attentionMask, [B, L])],
      ["encoder_labels", i32(b.encoderLabels, [B, L])],
      ["decoder_input_ids", i32(b.decoderInputIds, [B, L])],
      ["decoder_attention_mask", i32(Int32Array.from(b.decoderAttentionMask), [B, L, L])],
      ["decoder_labels", i32(b.decoderLabels, [B, L])],
      ["encoder_mask_kinds", i32(Int32Array.from(b.encoderMaskKinds), [B, L])],
      ["lengths", i32(b.lengths, [B])],
    ]),
    { format: "retromae-batch" },
  );
}

export function loadBatch(file: string): RetroMAEBatch {
  const { tensors } = readSafetensors(file);
  const get = (name: string): { data: Int32Array; shape: readonly number[] } => {
    const t = tensors.get(name);
    if (!t || t.dtype !== "I32") throw new Error(`${file} has no int32 "${name}"; it is not a batch saved by saveBatch.`);
    return { data: t.data as Int32Array, shape: t.shape };
  };
  const ids = get("encoder_input_ids");
  const [B, L] = ids.shape;
  return {
    batchSize: B,
    seqLength: L,
    encoderInputIds: ids.data,
    attentionMask: get("attention_mask").data,
    encoderLabels: get("encoder_labels").data,
    decoderInputIds: get("decoder_input_ids").data,
    decoderAttentionMask: Uint8Array.from(get("decoder_attention_mask").data),
    decoderLabels: get("decoder_labels").data,
    encoderMaskKinds: Uint8Array.from(get("encoder_mask_kinds").data),
    lengths: get("lengths").data,
  };
}
