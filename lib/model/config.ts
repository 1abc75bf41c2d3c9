/**
 * BERT configuration, with Hugging Face field meanings (camelCase here,
 * snake_case in config.json) and the presets RetroMAE experiments use.
 */

export interface BertConfig {
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  intermediateSize: number;
  /** Only the exact erf GELU, as BERT uses. */
  hiddenAct: "gelu";
  hiddenDropoutProb: number;
  attentionProbsDropoutProb: number;
  maxPositionEmbeddings: number;
  typeVocabSize: number;
  initializerRange: number;
  layerNormEps: number;
  padTokenId: number;
}

export const BASE_DEFAULTS: Omit<BertConfig, "hiddenSize" | "numHiddenLayers" | "numAttentionHeads" | "intermediateSize"> = {
  vocabSize: 30522,
  hiddenAct: "gelu",
  hiddenDropoutProb: 0.1,
  attentionProbsDropoutProb: 0.1,
  maxPositionEmbeddings: 512,
  typeVocabSize: 2,
  initializerRange: 0.02,
  layerNormEps: 1e-12,
  padTokenId: 0,
};

export const PRESETS = {
  tiny: { numHiddenLayers: 2, hiddenSize: 128, numAttentionHeads: 2, intermediateSize: 512 },
  mini: { numHiddenLayers: 4, hiddenSize: 256, numAttentionHeads: 4, intermediateSize: 1024 },
  small: { numHiddenLayers: 4, hiddenSize: 512, numAttentionHeads: 8, intermediateSize: 2048 },
  base: { numHiddenLayers: 12, hiddenSize: 768, numAttentionHeads: 12, intermediateSize: 3072 },
} as const;

export type PresetName = keyof typeof PRESETS;

/** A preset with any field overridden, validated. */
export function bertConfig(preset: PresetName = "tiny", overrides: Partial<BertConfig> = {}): BertConfig {
  const base = PRESETS[preset];
  if (!base) {
    throw new Error(`Unknown model preset "${preset}"; use one of ${Object.keys(PRESETS).join(", ")}.`);
  }
  const cfg: BertConfig = { ...BASE_DEFAULTS, ...base, ...overrides };
  validateConfig(cfg);
  return cfg;
}

export function validateConfig(cfg: BertConfig): void {
  const positive: (keyof BertConfig)[] = [
    "vocabSize",
    "hiddenSize",
    "numHiddenLayers",
    "numAttentionHeads",
    "intermediateSize",
    "maxPositionEmbeddings",
    "typeVocabSize",
  ];
  for (const k of positive) {
    const v = cfg[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new Error(`Model config ${k} must be a positive whole number, got ${String(v)}.`);
    }
  }
  if (cfg.hiddenSize % cfg.numAttentionHeads !== 0) {
    throw new Error(
      `Model config hiddenSize ${cfg.hiddenSize} is not divisible by numAttentionHeads ${cfg.numAttentionHeads}; change one so it divides.`,
    );
  }
  for (const k of ["hiddenDropoutProb", "attentionProbsDropoutProb"] as const) {
    if (!(cfg[k] >= 0 && cfg[k] < 1)) throw new Error(`Model config ${k} must be in [0, 1), got ${cfg[k]}.`);
  }
  if (cfg.hiddenAct !== "gelu") {
    throw new Error(`Model config hiddenAct "${cfg.hiddenAct}" is not supported; BERT uses "gelu".`);
  }
}
