/**
 * retromae: the public API. The kernel and notebooks import only from here.
 */
export * as tf from "./engine/tf";
export { backend, use as useBackend, info as backendInfo, BACKEND_NAMES } from "./engine/backend";
export type { BackendName, BackendChoice, BackendInfo, SkippedBackend } from "./engine/backend";
export { Rng } from "./engine/rng";
export type { RngState } from "./engine/rng";
export { BertTokenizer, cleanUpTokenization } from "./text/tokenizer";
export type { TokenizerOptions, Encoding, EncodeOptions, BatchEncodeOptions, BatchEncoding } from "./text/tokenizer";
export { Vocab, loadVocab, bertBaseUncasedVocab } from "./text/vocab";
export { bertConfig, PRESETS } from "./model/config";
export type { BertConfig, PresetName } from "./model/config";
export { RetroMAE, retroMAEWeightShapes } from "./model/retromae";
export type { RetroMAELosses, LossValues } from "./model/retromae";
export { RetroMAECollator, IGNORE, MaskKind } from "./masking/collator";
export type { RetroMAEBatch, CollatorOptions, Example } from "./masking/collator";
export { wholeWordMask, pyRound, maskCount } from "./masking/whole-word";
export { readSafetensors, writeSafetensors, parseSafetensors, serializeSafetensors } from "./model/safetensors";
export type { NamedArray } from "./model/safetensors";
export { MaskPreview } from "./masking/preview";
export type { PreviewToken } from "./masking/preview";
export { display, setDisplay, terminalDisplay, toBundle, JUPYTER_DISPLAY } from "./display";
export type { Display, DisplayHandle, Displayable, MimeBundle } from "./display";
export { PlotlyFigure, PLOTLY_MIME } from "./plot/figure";
export { saveCheckpoint, loadCheckpoint, hfConfig, configFromHf } from "./model/checkpoint";
export type { LoadReport, SaveOptions, LoadOptions } from "./model/checkpoint";
export { saveBatch, loadBatch } from "./masking/batch-io";
export { Trainer, TrainingStopped } from "./train/trainer";
export type { TrainerOptions, TrainerHook, TrainerEvent, StepInfo, EvalInfo, FitOptions, FitResult } from "./train/trainer";
export { AdamW, clipGradNorm } from "./train/optim";
export { LrSchedule } from "./train/schedule";
export { PackedCorpus, BatchStream } from "./train/data";
export type { DataPosition } from "./train/data";
export { readCorpus, splitSentences } from "./text/corpus";
export { LossChart, labelRuns } from "./plot/loss-chart";
export { LiveReport } from "./train/live";
