/**
 * `npm run bench -- NAME [options]`: prints JSON lines.
 *   tokenize  tokenizer MB/s and docs/s on SciFact
 *   matmul    GFLOP/s per backend, with PyTorch in the same run
 *   model     RetroMAE forward+backward per preset, with PyTorch in the same run
 *   train     full Trainer steps (AdamW, clipping) per preset, with PyTorch in the same run
 *   controls  the training control panel's cost on steps: with and without trainer.controls() open
 *   profile   where one training step's time goes, kernel by kernel
 *   probe     SciFact encoding, search, full probe and BM25, with PyTorch encoding in the same run
 *   kernel    kernel start, cell round trip, print throughput and memory, with ipykernel in the same run
 *   science   RetroMAE vs MLM-only continued from one start: nDCG@10 against step, intervals and paired tests
 *   host      the host's share of a webgpu training step (Dawn's Null backend: no GPU work), with PyTorch's on its meta device in the same run
 *   gpu       training steps and probe encoding on the GPU backends (webgpu, tensorflow), with PyTorch on CUDA in the same run
 *   gpu-table bench gpu's JSON lines (bench-gpu.jsonl) as the README's Markdown tables
 *   finetune  the official fine-tuning recipe on SciFact train for several encoders, then test nDCG@10, zero-shot and fine-tuned
 */
import { benchKernel } from "./kernel";
import { benchScience } from "./science";
import { benchFinetune } from "./finetune";
import { benchGpu, benchGpuOne } from "./gpu";
import { benchGpuTable } from "./gpu-table";
import { benchHost } from "./host";
import { benchMatmul } from "./matmul";
import { benchModel, benchModelOne } from "./model";
import { benchProbe } from "./probe";
import { benchProfile } from "./profile";
import { benchTokenize } from "./tokenize";
import { benchTrain, benchTrainOne } from "./train";
import { benchControls } from "./controls";

const BENCHES: Record<string, (args: string[]) => Promise<void>> = {
  tokenize: benchTokenize,
  matmul: benchMatmul,
  model: benchModel,
  "model-one": benchModelOne,
  train: benchTrain,
  controls: benchControls,
  "train-one": benchTrainOne,
  probe: benchProbe,
  profile: benchProfile,
  kernel: benchKernel,
  science: benchScience,
  finetune: benchFinetune,
  host: benchHost,
  gpu: benchGpu,
  "gpu-one": benchGpuOne,
  "gpu-table": benchGpuTable,
};

async function main(): Promise<void> {
  const [name, ...args] = process.argv.slice(2);
  const run = name ? BENCHES[name] : undefined;
  if (!run) {
    console.error(`Unknown benchmark ${JSON.stringify(name ?? "")}; use one of: ${Object.keys(BENCHES).join(", ")}.`);
    process.exit(2);
  }
  await run(args);
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
