#!/usr/bin/env python3
"""PyTorch's side of CharRnn's safetensors round trip (SafeTensorsTests runs it with Debian's python3-torch).

The safetensors reader and writer below are written from the format's specification, because Debian has no
safetensors package: an 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets},
"__metadata__": {str: str}}, then the raw little-endian data (offsets relative to its start).

  safetensors_peer.py check JOBS.json   for each {path, ids, prefix, n}: load the file into the book's concise RNNModel
                                        (nn.RNN/GRU/LSTM as .rnn + nn.Linear as .dense, strict load_state_dict), print
                                        its logits for ids (one sequence from a zero state) and its greedy text
  safetensors_peer.py write JOBS.json   for each {path, cell, layers, hidden, nonlinearity, vocab, seed, prefix, n}:
                                        a fresh PyTorch model written the same way, and its own greedy text
Prints one JSON list of results on stdout.
"""
import json
import struct
import sys

import torch
import torch.nn as nn


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    tensors = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", (name, e["dtype"])
        begin, end = e["data_offsets"]
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32) if end > begin else torch.zeros(0)
        tensors[name] = flat.reshape(e["shape"]).clone()
    return tensors, meta


def write(path, tensors, meta):
    header, chunks, offset = {"__metadata__": meta}, [], 0
    for name, t in tensors.items():
        raw = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    h = json.dumps(header, ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


class RNNModel(nn.Module):
    """d2l 6.5's concise model: one-hot inputs, a recurrent layer named rnn, a Linear named dense."""

    def __init__(self, cell, vocab, hidden, layers, nonlinearity="tanh"):
        super().__init__()
        if cell == "rnn":
            self.rnn = nn.RNN(vocab, hidden, layers, nonlinearity=nonlinearity)
        elif cell == "gru":
            self.rnn = nn.GRU(vocab, hidden, layers)
        else:
            self.rnn = nn.LSTM(vocab, hidden, layers)
        self.dense = nn.Linear(hidden, vocab)
        self.vocab = vocab

    def forward(self, ids, state=None):
        x = nn.functional.one_hot(ids, self.vocab).float().unsqueeze(1)  # (T, batch 1, V)
        y, state = self.rnn(x, state)
        return self.dense(y.squeeze(1)), state


def greedy(model, chars, prefix, n):
    """d2l's predict_rnn_pytorch: warm up on the prefix, then feed back the argmax."""
    index = {c: i for i, c in enumerate(chars)}
    out, state = [index[prefix[0]]], None
    with torch.no_grad():
        for t in range(len(prefix) + n - 1):
            y, state = model(torch.tensor([out[-1]]), state)
            out.append(index[prefix[t + 1]] if t < len(prefix) - 1 else int(y.argmax(dim=1)))
    return "".join(chars[i] for i in out)


def check(job):
    tensors, meta = read(job["path"])
    chars = list(meta["charrnn.vocab"])
    model = RNNModel(meta["charrnn.cell"], len(chars), int(meta["charrnn.hidden"]), int(meta["charrnn.layers"]),
                     meta.get("charrnn.nonlinearity", "tanh"))
    model.load_state_dict(tensors, strict=True)
    with torch.no_grad():
        logits, _ = model(torch.tensor(job["ids"]))
    return {"logits": logits.flatten().tolist(), "greedy": greedy(model, chars, job["prefix"], job["n"])}


def make(job):
    torch.manual_seed(job["seed"])
    chars = list(job["vocab"])
    model = RNNModel(job["cell"], len(chars), job["hidden"], job["layers"], job.get("nonlinearity", "tanh"))
    meta = {"charrnn.vocab": job["vocab"], "charrnn.cell": job["cell"], "charrnn.hidden": str(job["hidden"]),
            "charrnn.layers": str(job["layers"]), "charrnn.nonlinearity": job.get("nonlinearity", "tanh")}
    write(job["path"], model.state_dict(), meta)
    return {"greedy": greedy(model, chars, job["prefix"], job["n"])}


if __name__ == "__main__":
    mode, jobs = sys.argv[1], json.load(open(sys.argv[2], encoding="utf-8"))
    print(json.dumps([check(j) if mode == "check" else make(j) for j in jobs], ensure_ascii=False))
