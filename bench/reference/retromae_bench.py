"""PyTorch timing of one RetroMAE forward+backward training step (dropout on, no optimizer), for
`npm run bench -- model`. The model is bench/reference/retromae_ref.py's,
with weights drawn as HF initialises them; the batch is one saved by
this project (safetensors).

Usage: /usr/bin/python3 bench/reference/retromae_bench.py CONFIG_JSON BATCH.safetensors[,BATCH2...] [--steps N] [--adamw] [--same-work]
With several batch files the steps cycle through them (the train benchmark
passes the batches its own timed steps used), and the figures are means:
total tokens over total time.
With --same-work the encoder's logits are computed at the masked positions
only, as this project's step does (the headline run computes them at every
position, as HF's BertForMaskedLM does). Neither computes DupMAE's
bag-of-words loss.
With --adamw the step also clips the gradient norm to 1.0 and takes an AdamW
step (lr 1e-4, weight decay 0.01 without biases and LayerNorm weights): a
full training step.
With --device cuda the weights and batches live on the GPU, each step is
timed between torch.cuda.synchronize() calls, and the peak GPU memory is
reported; --tf32 lets cuBLAS use TF32 for fp32 matmuls (PyTorch's fast
setting), without it TF32 is off (the same fp32 arithmetic as the other
engines).
With --device meta every op is dispatched (autograd included) and nothing is
computed: PyTorch's host time per step (the encoder's logits at every
position only: masked positions need the data; AdamW's for-loop form).
Prints one JSON line.
"""
import json
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from retromae_ref import Reference, read_safetensors  # noqa: E402


def init_weights(cfg):
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    shapes = {
        "bert.embeddings.word_embeddings.weight": (v, h),
        "bert.embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], h),
        "bert.embeddings.token_type_embeddings.weight": (cfg["type_vocab_size"], h),
        "bert.embeddings.LayerNorm.weight": (h,),
        "bert.embeddings.LayerNorm.bias": (h,),
        "cls.predictions.transform.dense.weight": (h, h),
        "cls.predictions.transform.dense.bias": (h,),
        "cls.predictions.transform.LayerNorm.weight": (h,),
        "cls.predictions.transform.LayerNorm.bias": (h,),
        "cls.predictions.bias": (v,),
    }
    layer = {
        "attention.self.query": (h, h), "attention.self.key": (h, h), "attention.self.value": (h, h),
        "attention.output.dense": (h, h), "intermediate.dense": (i, h), "output.dense": (h, i),
    }
    prefixes = [f"bert.encoder.layer.{n}" for n in range(cfg["num_hidden_layers"])] + ["c_head"]
    for p in prefixes:
        for name, shape in layer.items():
            shapes[f"{p}.{name}.weight"] = shape
            shapes[f"{p}.{name}.bias"] = (shape[0],)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{p}.{ln}.weight"] = (h,)
            shapes[f"{p}.{ln}.bias"] = (h,)
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("LayerNorm.weight"):
            out[name] = torch.ones(shape)
        elif name.endswith(".weight"):
            out[name] = torch.randn(shape, generator=g) * cfg["initializer_range"]
        else:
            out[name] = torch.zeros(shape)
    return out


def main():
    cfg = json.loads(sys.argv[1])
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = "--tf32" in sys.argv
        torch.backends.cudnn.allow_tf32 = "--tf32" in sys.argv
    meta = device == "meta"
    on_cpu = [read_safetensors(f) for f in sys.argv[2].split(",")]
    batch_tokens = [int(b["attention_mask"].sum()) for b in on_cpu]
    batches = [{k: v.to(device) for k, v in b.items()} for b in on_cpu]
    steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 3
    model = Reference(cfg, {k: v.to(device) for k, v in init_weights(cfg).items()}, training=True, masked_only="--same-work" in sys.argv, bow=False)
    optimizer = None
    if "--adamw" in sys.argv:
        # The HF Trainer's grouping: no weight decay on biases and LayerNorm weights.
        decay = [p for n, p in model.w.items() if not (n.endswith(".bias") or "LayerNorm." in n)]
        no_decay = [p for n, p in model.w.items() if n.endswith(".bias") or "LayerNorm." in n]
        # (meta has no kernels for the foreach ops in torch 1.13: the for-loop AdamW there)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, **({"foreach": False} if meta else {}))
    times = []
    tokens = 0
    for step in range(steps + 1):
        index = (step - 1) % len(batches) if step > 0 else 0
        batch = batches[index]
        for p in model.w.values():
            p.grad = None
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        _, enc, dec = model.forward(batch)
        (enc + dec).backward()
        if optimizer is not None:
            torch.nn.utils.clip_grad_norm_(list(model.w.values()), 1.0)
            optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        if step > 0:  # the first step warms up
            times.append(time.perf_counter() - t)
            tokens += batch_tokens[index]
    if len(batches) == 1:
        ms = statistics.median(times) * 1e3
        tokens_per_s = tokens / len(times) / (ms / 1e3)
    else:
        ms = sum(times) / len(times) * 1e3
        tokens_per_s = tokens / sum(times)
    print(json.dumps({
        "torch": torch.__version__,
        "ms_per_step": round(ms, 1),
        "tokens_per_s": round(tokens_per_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "steps": steps,
        "encoder_logits": "masked positions" if model.masked_only else "every position",
        **({"device": torch.cuda.get_device_name(), "tf32": "--tf32" in sys.argv,
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20)} if cuda else {}),
    }))


if __name__ == "__main__":
    main()
