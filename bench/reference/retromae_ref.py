"""Plain-PyTorch RetroMAE reference (no transformers needed).

It reads a checkpoint saved by this project (config.json + model.safetensors,
Hugging Face names, decoder under c_head.*) and a batch saved as safetensors,
runs the RetroMAE forward pass in eval mode (no dropout) with full-vocabulary
logits and PyTorch's CrossEntropyLoss(ignore_index=-100), backpropagates, and
prints JSON: the [CLS] embeddings, the encoder and decoder losses, and per
weight the gradient norm, max abs, and gradient values at fixed sampled
indices.

Usage: /usr/bin/python3 bench/reference/retromae_ref.py CHECKPOINT_DIR BATCH.safetensors [--samples N]
Needs Debian's python3-torch (and libopenblas0-pthread for speed).
"""
import json
import math
import struct
import sys

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "I32": torch.int32, "I64": torch.int64, "U8": torch.uint8}
MASK_VALUE = torch.finfo(torch.float32).min


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8 : 8 + n])
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        raw = bytearray(buf[8 + n + start : 8 + n + end])
        out[name] = torch.frombuffer(raw, dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"]).clone()
    return out


class Reference:
    """RetroMAE written out with torch.nn.functional, Hugging Face weight names."""

    def __init__(self, config, weights, training=False, masked_only=False, bow=True):
        self.cfg = config
        self.training = training  # dropout on (timing runs) or off (parity)
        # masked_only: encoder logits at the masked positions only, as this project computes them
        # (the same work); else at every position, as HF's BertForMaskedLM and the official code do.
        self.masked_only = masked_only
        self.bow = bow  # DupMAE's bag-of-words loss, reported for parity; timing runs skip it
        self.bow_loss = None
        self.eps = config["layer_norm_eps"]
        self.w = {k: v.float().requires_grad_(True) for k, v in weights.items()}

    def linear(self, prefix, x):
        return F.linear(x, self.w[prefix + ".weight"], self.w[prefix + ".bias"])

    def layer_norm(self, prefix, x):
        return F.layer_norm(x, x.shape[-1:], self.w[prefix + ".weight"], self.w[prefix + ".bias"], self.eps)

    def embeddings(self, ids):
        length = ids.shape[1]
        words = F.embedding(ids, self.w["bert.embeddings.word_embeddings.weight"], padding_idx=self.cfg["pad_token_id"])
        positions = self.w["bert.embeddings.position_embeddings.weight"][:length]
        types = self.w["bert.embeddings.token_type_embeddings.weight"][0]
        return self.dropout(self.layer_norm("bert.embeddings.LayerNorm", words + positions + types), "hidden")

    def dropout(self, x, kind):
        p = self.cfg["hidden_dropout_prob"] if kind == "hidden" else self.cfg["attention_probs_dropout_prob"]
        return F.dropout(x, p, training=self.training)

    def layer(self, prefix, query, key_value, mask):
        batch, lq, hidden = query.shape
        heads = self.cfg["num_attention_heads"]
        dh = hidden // heads

        def split(x):
            return x.view(batch, x.shape[1], heads, dh).transpose(1, 2)

        q = split(self.linear(prefix + ".attention.self.query", query))
        k = split(self.linear(prefix + ".attention.self.key", key_value))
        v = split(self.linear(prefix + ".attention.self.value", key_value))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + mask
        context = (self.dropout(scores.softmax(-1), "attention") @ v).transpose(1, 2).reshape(batch, lq, hidden)
        out = self.dropout(self.linear(prefix + ".attention.output.dense", context), "hidden")
        attended = self.layer_norm(prefix + ".attention.output.LayerNorm", out + query)
        inner = F.gelu(self.linear(prefix + ".intermediate.dense", attended))
        out = self.dropout(self.linear(prefix + ".output.dense", inner), "hidden")
        return self.layer_norm(prefix + ".output.LayerNorm", out + attended)

    def mlm_logits(self, hidden):
        t = self.layer_norm("cls.predictions.transform.LayerNorm", F.gelu(self.linear("cls.predictions.transform.dense", hidden)))
        return t @ self.w["bert.embeddings.word_embeddings.weight"].T + self.w["cls.predictions.bias"]

    def forward(self, b):
        vocab = self.cfg["vocab_size"]
        attn = b["attention_mask"].float()
        h = self.embeddings(b["encoder_input_ids"].long())
        pad_mask = (1.0 - attn[:, None, None, :]) * MASK_VALUE
        for i in range(self.cfg["num_hidden_layers"]):
            h = self.layer(f"bert.encoder.layer.{i}", h, h, pad_mask)
        cls = h[:, :1]  # [B, 1, H]
        labels = b["encoder_labels"].long()
        if self.masked_only:
            at = labels.view(-1) != -100  # [B*L]
            enc_loss = F.cross_entropy(self.mlm_logits(h.reshape(-1, h.shape[-1])[at]), labels.view(-1)[at])  # logits [M, V]
        else:
            enc_logits = self.mlm_logits(h)  # [B, L, V]
            enc_loss = F.cross_entropy(enc_logits.view(-1, vocab), labels.view(-1), ignore_index=-100)
            if self.bow:
                self.bow_loss = self.dupmae_bow_loss(enc_logits, attn, b).detach()

        ids = b["decoder_input_ids"].long()
        length = ids.shape[1]
        key_value = torch.cat([cls, self.embeddings(ids)[:, 1:]], dim=1)
        query = self.w["bert.embeddings.position_embeddings.weight"][:length] + cls
        dec_mask = (1.0 - b["decoder_attention_mask"].float()[:, None]) * MASK_VALUE
        d = self.layer("c_head", query, key_value, dec_mask)
        dec_loss = F.cross_entropy(self.mlm_logits(d).view(-1, vocab), b["decoder_labels"].long().view(-1), ignore_index=-100)
        return cls[:, 0], enc_loss, dec_loss

    def dupmae_bow_loss(self, logits, attn, b):
        """DupMAE's bag-of-words loss (reported only; not in the backward pass here)."""
        vocab = self.cfg["vocab_size"]
        pooled, _ = torch.max(logits[:, 1:] + (1 - attn[:, 1:, None]) * -1000, dim=1)  # [B, V]
        weight = torch.zeros(logits.shape[0], vocab)
        for row, n in enumerate(b["lengths"].tolist()):
            body = b["decoder_input_ids"][row, 1 : n - 1].long()
            weight[row, body] = 1.0 / len(body)
        return torch.mean(-torch.sum(weight * F.log_softmax(pooled, dim=-1), dim=1))


def main():
    ckpt, batch_path = sys.argv[1], sys.argv[2]
    samples = int(sys.argv[sys.argv.index("--samples") + 1]) if "--samples" in sys.argv else 32
    with open(f"{ckpt}/config.json") as f:
        config = json.load(f)
    model = Reference(config, read_safetensors(f"{ckpt}/model.safetensors"))
    batch = read_safetensors(batch_path)
    cls, enc_loss, dec_loss = model.forward(batch)
    (enc_loss + dec_loss).backward()
    gen = torch.Generator().manual_seed(0)
    grads = {}
    for name, p in sorted(model.w.items()):
        g = p.grad.reshape(-1)
        idx = torch.randint(0, g.numel(), (samples,), generator=gen)
        grads[name] = {
            "norm": g.norm().item(),
            "max_abs": g.abs().max().item(),
            "indices": idx.tolist(),
            "values": g[idx].tolist(),
        }
    print(json.dumps({
        "torch": torch.__version__,
        "cls": cls.detach().tolist(),
        "encoder_loss": enc_loss.item(),
        "decoder_loss": dec_loss.item(),
        "bow_loss": model.bow_loss.item(),
        "grads": grads,
    }))


if __name__ == "__main__":
    main()
