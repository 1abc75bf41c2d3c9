"""PyTorch timing of [CLS] encoding, for `npm run bench -- probe`.

Usage: /usr/bin/python3 bench/reference/encode_bench.py CONFIG_JSON BATCHES.safetensors
BATCHES holds input_ids_N / attention_mask_N for N = 0.. (the same length-
sorted, padded batches this project encodes). Weights are drawn as HF
initialises them. Eval mode, no gradients. Each batch is timed twice, in
turn: every layer at every position (HF's BertModel), and with the last layer
at [CLS] only, the same work as this project's encode. With --device cuda
(and --tf32 for TF32 matmuls) it runs on the GPU, synchronised around each
batch, and reports the peak GPU memory. Prints one JSON line.
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
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = "--tf32" in sys.argv
    tensors = {k: v.to(device) for k, v in read_safetensors(sys.argv[2]).items()}
    model = Reference(cfg, {k: v.to(device) for k, v in init_weights(cfg).items()})
    for p in model.w.values():
        p.requires_grad_(False)
    n = len([k for k in tensors if k.startswith("input_ids_")])
    last = cfg["num_hidden_layers"] - 1

    def encode(i, cls_only_last_layer):
        ids = tensors[f"input_ids_{i}"].long()
        attn = tensors[f"attention_mask_{i}"].float()
        h = model.embeddings(ids)
        mask = (1.0 - attn[:, None, None, :]) * torch.finfo(torch.float32).min
        for layer in range(last + 1):
            # same work as this project's encode: the last layer's query (and all after it) at [CLS] only
            query = h[:, :1] if cls_only_last_layer and layer == last else h
            h = model.layer(f"bert.encoder.layer.{layer}", query, h, mask)
        _ = h[:, 0]
        return ids.shape[0]

    # Every layer at every position (HF's BertModel), and the same work as ours, batch by batch in turn, so that
    # both see the same warm caches and allocator; the longest batch once each first, untimed.
    seconds = {False: 0.0, True: 0.0}
    docs = 0
    with torch.no_grad():
        for mode in (False, True):
            encode(n - 1, mode)
        for i in range(n):
            for mode in (False, True):
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                count = encode(i, mode)
                if cuda:
                    torch.cuda.synchronize()
                seconds[mode] += time.perf_counter() - start
            docs += count
    print(json.dumps({"torch": torch.__version__, "docs": docs, "seconds": round(seconds[False], 2), "docs_per_s": round(docs / seconds[False], 1),
                      "same_work_seconds": round(seconds[True], 2), "docs_per_s_same_work": round(docs / seconds[True], 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      **({"device": torch.cuda.get_device_name(), "tf32": "--tf32" in sys.argv,
                          "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20)} if cuda else {})}))


if __name__ == "__main__":
    main()
