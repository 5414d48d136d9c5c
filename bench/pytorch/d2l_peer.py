#!/usr/bin/env python3
"""The book's two PyTorch char-RNN trainers (d2l-zh PyTorch edition, 6.4 and 6.5), as a timing peer for CharRnn.

  6.4 "scratch": one-hot inputs, tanh RNN written with torch.matmul, weights N(0, 0.01), zero biases,
                 global-norm gradient clipping (theta 0.01), SGD p -= lr * grad (lr 100), random sampling.
  6.5 "concise": nn.RNN(V, H) + nn.Linear(H, V) on one-hot inputs (cuDNN on a GPU), Adam lr 1e-3,
                 consecutive sampling. The book's clipping call there consumes a generator and never clips;
                 --clip none reproduces that, a number clips for real (torch.nn.utils.clip_grad_norm_).

Same corpus pipeline as CharRnn (zip entry jaychou_lyrics.txt, '\\n'/'\\r' -> ' ', first N chars, vocabulary sorted by
code point). The loss is accumulated on the device and read once per epoch (the book calls l.item() every minibatch,
which would add a host sync per minibatch on a GPU); epochs are timed with torch.cuda.synchronize() on a GPU.
Prediction is off unless --predict (timings never include it). Prints JSON (or writes it with --json).

  python3 bench/pytorch/d2l_peer.py --model scratch --epochs 250                # book 6.4
  python3 bench/pytorch/d2l_peer.py --model concise --epochs 250                # book 6.5
  python3 bench/pytorch/d2l_peer.py --model concise --optimizer sgd --lr 100 --clip 0.01 --sampling random \\
      --hidden 1024 --batch 256 --chars all --minibatches 100 --device cuda     # the large config
"""
import argparse
import json
import math
import os
import random
import sys
import time
import zipfile

import torch
from torch import nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CORPUS = os.path.join(HERE, "..", "..", "data", "jaychou_lyrics.txt.zip")


def load_corpus(path, chars):
    if path.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            name = "jaychou_lyrics.txt" if "jaychou_lyrics.txt" in z.namelist() else z.namelist()[0]
            text = z.read(name).decode("utf-8")
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    text = text.replace("\n", " ").replace("\r", " ")
    if chars is not None:
        text = text[:chars]
    idx_to_char = sorted(set(text))
    char_to_idx = {c: i for i, c in enumerate(idx_to_char)}
    return [char_to_idx[c] for c in text], char_to_idx, idx_to_char


def data_iter_random(corpus, batch_size, num_steps, device):
    num_examples = (len(corpus) - 1) // num_steps
    epoch_size = num_examples // batch_size
    example_indices = list(range(num_examples))
    random.shuffle(example_indices)
    for i in range(epoch_size):
        batch = example_indices[i * batch_size:(i + 1) * batch_size]
        X = [corpus[j * num_steps:j * num_steps + num_steps] for j in batch]
        Y = [corpus[j * num_steps + 1:j * num_steps + 1 + num_steps] for j in batch]
        yield torch.tensor(X, dtype=torch.long, device=device), torch.tensor(Y, dtype=torch.long, device=device)


def data_iter_consecutive(corpus, batch_size, num_steps, device):
    indices = torch.tensor(corpus, dtype=torch.long, device=device)
    batch_len = len(corpus) // batch_size
    indices = indices[0:batch_size * batch_len].view(batch_size, batch_len)
    epoch_size = (batch_len - 1) // num_steps
    for i in range(epoch_size):
        i = i * num_steps
        yield indices[:, i:i + num_steps], indices[:, i + 1:i + num_steps + 1]


def epoch_size(sampling, n, batch, steps):
    return (n - 1) // steps // batch if sampling == "random" else (n // batch - 1) // steps


class ScratchRNN:
    """Book 6.4: get_params / init_rnn_state / rnn."""

    def __init__(self, V, H, device):
        def normal(shape):
            return torch.tensor(torch.randn(shape).numpy() * 0.01, dtype=torch.float32, device=device).requires_grad_()
        self.W_xh, self.W_hh = normal((V, H)), normal((H, H))
        self.b_h = torch.zeros(H, device=device, requires_grad=True)
        self.W_hq = normal((H, V))
        self.b_q = torch.zeros(V, device=device, requires_grad=True)
        self.V, self.H = V, H

    def parameters(self):
        return [self.W_xh, self.W_hh, self.b_h, self.W_hq, self.b_q]

    def begin_state(self, batch, device):
        return torch.zeros((batch, self.H), device=device)

    def __call__(self, X, state):
        # X: (B, T) token ids -> list of T one-hot (B, V) inputs, as to_onehot does.
        H = state
        outputs = []
        for x in F.one_hot(X.T, self.V).float():
            H = torch.tanh(torch.matmul(x, self.W_xh) + torch.matmul(H, self.W_hh) + self.b_h)
            outputs.append(torch.matmul(H, self.W_hq) + self.b_q)
        return torch.cat(outputs, dim=0), H


class ConciseRNN(nn.Module):
    """Book 6.5: RNNModel = nn.RNN + nn.Linear on one-hot inputs."""

    def __init__(self, V, H):
        super().__init__()
        self.rnn = nn.RNN(input_size=V, hidden_size=H)
        self.dense = nn.Linear(H, V)
        self.V, self.H = V, H

    def begin_state(self, batch, device):
        return torch.zeros((1, batch, self.H), device=device)

    def forward(self, X, state):
        Y, state = self.rnn(F.one_hot(X.T, self.V).float(), state)  # (T, B, V) -> (T, B, H)
        return self.dense(Y.reshape(-1, Y.shape[-1])), state


def grad_clipping(params, theta):
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
    scale = torch.clamp(theta / norm, max=1.0)  # no host sync: multiply by min(1, theta/norm)
    for p in params:
        p.grad.mul_(scale)


def predict(model, prefix, num_chars, char_to_idx, idx_to_char, device):
    with torch.no_grad():
        state = model.begin_state(1, device)
        output = [char_to_idx[prefix[0]]]
        for t in range(num_chars + len(prefix) - 1):
            X = torch.tensor([[output[-1]]], device=device)
            Y, state = model(X, state)
            output.append(char_to_idx[prefix[t + 1]] if t < len(prefix) - 1 else int(Y.argmax(dim=1).item()))
    return "".join(idx_to_char[i] for i in output)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["scratch", "concise"], default="scratch")
    ap.add_argument("--sampling", choices=["random", "consecutive"])
    ap.add_argument("--optimizer", choices=["sgd", "adam"])
    ap.add_argument("--lr", type=float)
    ap.add_argument("--clip", help="theta, or 'none' (default: 0.01 for scratch, none for concise, as the book)")
    ap.add_argument("--epochs", type=int, default=250)
    ap.add_argument("--minibatches", type=int, help="time this many minibatches (cycling epochs) instead of --epochs")
    ap.add_argument("--warmup", type=int, default=3, help="untimed minibatches before --minibatches")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=35)
    ap.add_argument("--chars", default="10000", help="first N characters, or 'all'")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--predict", action="store_true", help="print the book's lines every 50 epochs (untimed)")
    ap.add_argument("--json", help="write the result here instead of stdout")
    ap.add_argument("--precision", choices=["fp32", "tf32", "default"], default="fp32",
                    help="fp32: no TF32 anywhere (CharRnn's default); tf32: TF32 in cuDNN and matmuls (CharRnn --tf32); "
                         "default: PyTorch's own defaults, where cuDNN (so nn.RNN) may use TF32 but matmuls do not")
    a = ap.parse_args()
    if a.precision != "default":
        torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = a.precision == "tf32"

    concise = a.model == "concise"
    sampling = a.sampling or ("consecutive" if concise else "random")
    optimizer_name = a.optimizer or ("adam" if concise else "sgd")
    lr = a.lr if a.lr is not None else (1e-3 if optimizer_name == "adam" else 100.0)
    clip_arg = a.clip if a.clip is not None else ("none" if concise else "0.01")
    clip = None if clip_arg == "none" else float(clip_arg)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    device = torch.device(a.device)

    corpus, char_to_idx, idx_to_char = load_corpus(a.corpus, None if a.chars == "all" else int(a.chars))
    V = len(idx_to_char)
    model = ConciseRNN(V, a.hidden).to(device) if concise else ScratchRNN(V, a.hidden, device)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=lr) if optimizer_name == "adam" else None
    loss_fn = nn.CrossEntropyLoss()
    data_iter = data_iter_random if sampling == "random" else data_iter_consecutive
    n_per_epoch = epoch_size(sampling, len(corpus), a.batch, a.steps)
    if n_per_epoch < 1:
        sys.exit(f"corpus of {len(corpus)} characters is too short for batch {a.batch} x steps {a.steps}")

    def step(X, Y, state):
        if state is None or sampling == "random":
            state = model.begin_state(X.shape[0], device)
        else:
            state = state.detach()
        out, state = model(X, state)
        y = Y.T.reshape(-1)
        l = loss_fn(out, y)
        if opt is not None:
            opt.zero_grad(set_to_none=False)
        else:
            for p in params:
                if p.grad is not None:
                    p.grad.zero_()
        l.backward()
        if clip is not None:
            grad_clipping(params, clip)
        if opt is not None:
            opt.step()
        else:
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad
        return l.detach() * y.numel(), y.numel(), state

    result = {
        "peer": "pytorch", "torch": torch.__version__, "model": a.model, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "precision": a.precision, "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "threads": torch.get_num_threads(), "sampling": sampling, "optimizer": optimizer_name, "lr": lr, "clip": clip,
        "vocab": V, "hidden": a.hidden, "batch": a.batch, "steps": a.steps, "corpus_chars": len(corpus),
    }
    if a.minibatches:
        batches = list(data_iter(corpus, a.batch, a.steps, device))
        state = None
        for i in range(a.warmup):
            _, _, state = step(*batches[i % len(batches)], state)
        sync(device)
        l_sum = torch.zeros((), device=device)
        n = 0
        start = time.perf_counter()
        for i in range(a.minibatches):
            k = (a.warmup + i) % len(batches)
            ls, c, state = step(*batches[k], None if k == 0 else state)
            l_sum += ls
            n += c
        sync(device)
        secs = time.perf_counter() - start
        result.update(minibatches=a.minibatches, seconds=secs, tokens_per_s=a.minibatches * a.batch * a.steps / secs,
                      final_perplexity=math.exp(l_sum.item() / n))
    else:
        epochs = []
        total = 0.0
        for epoch in range(a.epochs):
            sync(device)
            start = time.perf_counter()
            l_sum = torch.zeros((), device=device)
            n = 0
            state = None
            for X, Y in data_iter(corpus, a.batch, a.steps, device):
                ls, c, state = step(X, Y, state)
                l_sum += ls
                n += c
            ppl = math.exp(l_sum.item() / n)  # one host read per epoch (also syncs)
            sync(device)
            secs = time.perf_counter() - start
            total += secs
            epochs.append({"epoch": epoch + 1, "perplexity": ppl, "seconds": secs})
            if a.predict and (epoch + 1) % 50 == 0:
                print("epoch %d, perplexity %f, time %.2f sec" % (epoch + 1, ppl, secs), file=sys.stderr)
                for prefix in ["分开", "不分开"]:
                    print(" -", predict(model, prefix, 50, char_to_idx, idx_to_char, device), file=sys.stderr)
        steps_total = n_per_epoch * a.epochs
        result.update(epochs=epochs, minibatches=steps_total, seconds=total,
                      tokens_per_s=steps_total * a.batch * a.steps / total, final_perplexity=epochs[-1]["perplexity"])
    text = json.dumps(result, indent=1)
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, a.json)
    else:
        print(text)


if __name__ == "__main__":
    main()
