"""PyTorch timing of [CLS] encoding, for `npm run bench -- probe`.

Usage: /usr/bin/python3 bench/reference/encode_bench.py CONFIG_JSON BATCHES.safetensors
BATCHES holds input_ids_N / attention_mask_N for N = 0.. (the same length-
sorted, padded batches this project encodes). Weights are drawn as HF
initialises them. Eval mode, no gradients. Timed twice: every layer at every
position (HF's BertModel), then with the last layer at [CLS] only, the same
work as this project's encode. Prints one JSON line.
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
    last = cfg["num_hidden_layers"] - 1

    def encode(cls_only_last_layer):
        docs = 0
        start = time.perf_counter()
        with torch.no_grad():
            for i in range(n):
                ids = tensors[f"input_ids_{i}"].long()
                attn = tensors[f"attention_mask_{i}"].float()
                h = model.embeddings(ids)
                mask = (1.0 - attn[:, None, None, :]) * torch.finfo(torch.float32).min
                for layer in range(last + 1):
                    # same work as this project's encode: the last layer's query (and all after it) at [CLS] only
                    query = h[:, :1] if cls_only_last_layer and layer == last else h
                    h = model.layer(f"bert.encoder.layer.{layer}", query, h, mask)
                _ = h[:, 0]
                docs += ids.shape[0]
        return docs, time.perf_counter() - start

    # every layer at every position, as HF's BertModel does; then the same work as ours
    docs, seconds = encode(False)
    _, same_seconds = encode(True)
    print(json.dumps({"torch": torch.__version__, "docs": docs, "seconds": round(seconds, 2), "docs_per_s": round(docs / seconds, 1),
                      "same_work_seconds": round(same_seconds, 2), "docs_per_s_same_work": round(docs / same_seconds, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
