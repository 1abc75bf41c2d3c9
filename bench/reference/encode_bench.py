"""PyTorch timing of [CLS] encoding, for `npm run bench -- probe`.

Usage: /usr/bin/python3 bench/reference/encode_bench.py CONFIG_JSON BATCHES.safetensors
BATCHES holds input_ids_N / attention_mask_N for N = 0.. (the same length-
sorted, padded batches this project encodes). Weights are drawn as HF
initialises them. Eval mode, no gradients. Prints one JSON line.
"""
import json
import resource
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from retromae_bench import init_weights  # noqa: E402
from retromae_ref import Reference, read_safetensors  # noqa: E402


def main():
    cfg = json.loads(sys.argv[1])
    tensors = read_safetensors(sys.argv[2])
    model = Reference(cfg, init_weights(cfg))
    for p in model.w.values():
        p.requires_grad_(False)
    n = len([k for k in tensors if k.startswith("input_ids_")])
    docs = 0
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(n):
            ids = tensors[f"input_ids_{i}"].long()
            attn = tensors[f"attention_mask_{i}"].float()
            h = model.embeddings(ids)
            mask = (1.0 - attn[:, None, None, :]) * torch.finfo(torch.float32).min
            for layer in range(cfg["num_hidden_layers"]):
                h = model.layer(f"bert.encoder.layer.{layer}", h, h, mask)
            _ = h[:, 0]
            docs += ids.shape[0]
    seconds = time.perf_counter() - start
    print(json.dumps({"torch": torch.__version__, "docs": docs, "seconds": round(seconds, 2), "docs_per_s": round(docs / seconds, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
