#!/usr/bin/env python3
"""The book's two PyTorch char-RNN trainers (d2l-zh PyTorch edition, 6.4 and 6.5), as a timing peer for CharRnn.

  6.4 "scratch": one-hot inputs, tanh RNN written with torch.matmul, weights N(0, 0.01), zero biases,
                 global-norm gradient clipping (theta 0.01), SGD p -= lr * grad (lr 100), random sampling.
  6.5 "concise": nn.RNN(V, H) + nn.Linear(H, V) on one-hot inputs (cuDNN on a GPU), Adam lr 1e-3,
                 consecutive sampling. The book's clipping call there consumes a generator and never clips;
                 --clip none reproduces that, a number clips for real (without a host sync).

How the minibatches reach the step (--mode):
  book   the book's data iterators: each minibatch built on the host and uploaded (or sliced) when used.
  eager  the peer at its best without graphs: each epoch's minibatches uploaded at once into fixed device buffers, the
         minibatch selected on the device by a counter, the loss summed on the device; the step issued op by op.
  graph  the same step (forward, loss, backward, clipping, optimizer with capturable=True, counter, state carry) captured
         once with torch.cuda.graph and replayed: one launch per minibatch. The capture's warm-up steps are undone
         (weights and optimizer state restored) so the run trains exactly the minibatches the others do. If capture
         fails, the error goes into the JSON ("graph_error") and the eager variant runs instead.

Same corpus pipeline as CharRnn (zip entry jaychou_lyrics.txt, '\\n'/'\\r' -> ' ', first N chars, vocabulary sorted by
code point). The first epoch (cuDNN plans, allocator, capture) is timed apart ("first_seconds") and left out of
"seconds"/"tokens_per_s"; with --minibatches, the --warmup steps are. Peak device memory: torch.cuda.max_memory_allocated.
--precision bf16 runs forward and loss under torch.autocast(bfloat16) (FP32 weights, optimizer and gradients).
Prediction is off unless --predict (timings never include it). Prints JSON (or writes it with --json).

  python3 bench/pytorch/d2l_peer.py --model scratch --epochs 250                # book 6.4
  python3 bench/pytorch/d2l_peer.py --model concise --epochs 250                # book 6.5
  python3 bench/pytorch/d2l_peer.py --model concise --optimizer sgd --lr 100 --clip 0.01 --sampling random \\
      --device cuda --mode graph                                                # the book's run, nn.RNN, captured
  python3 bench/pytorch/d2l_peer.py --model concise --optimizer sgd --lr 100 --clip 0.01 --sampling random \\
      --hidden 1024 --batch 256 --chars all --minibatches 100 --device cuda     # the large config
"""
import argparse
import contextlib
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


def one_hot(X, V):
    """F.one_hot(X, V).float() as one scatter, with no host-side range check (so it can be captured in a graph)."""
    return torch.zeros(X.shape + (V,), device=X.device).scatter_(-1, X.unsqueeze(-1), 1.0)


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
        for x in one_hot(X.T, self.V):
            H = torch.tanh(torch.matmul(x, self.W_xh) + torch.matmul(H, self.W_hh) + self.b_h)
            outputs.append(torch.matmul(H, self.W_hq) + self.b_q)
        return torch.cat(outputs, dim=0), H


class ConciseRNN(nn.Module):
    """Book 6.5 (and 6.7/6.8 with --cell): RNNModel = nn.RNN/nn.GRU/nn.LSTM + nn.Linear on one-hot inputs."""

    def __init__(self, V, H, cell="rnn", layers=1):
        super().__init__()
        self.rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell](input_size=V, hidden_size=H, num_layers=layers)
        self.dense = nn.Linear(H, V)
        self.V, self.H, self.cell, self.layers = V, H, cell, layers

    def begin_state(self, batch, device):
        h = torch.zeros((self.layers, batch, self.H), device=device)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    def forward(self, X, state):
        Y, state = self.rnn(one_hot(X.T, self.V), state)  # (T, B, V) -> (T, B, H)
        return self.dense(Y.reshape(-1, Y.shape[-1])), state


def states(state):
    """The tensors of a state (the LSTM's is a pair)."""
    return state if isinstance(state, tuple) else (state,)


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


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


def epoch_batches(corpus, sampling, batch, steps, n):
    """The epoch's minibatches as two (n, B, T) host tensors, drawn as the book's iterators draw them."""
    if sampling == "random":
        num_examples = (len(corpus) - 1) // steps
        order = list(range(num_examples))
        random.shuffle(order)
        rows = [order[i * batch:(i + 1) * batch] for i in range(n)]
        X = [[corpus[j * steps:j * steps + steps] for j in r] for r in rows]
        Y = [[corpus[j * steps + 1:j * steps + 1 + steps] for j in r] for r in rows]
        return torch.tensor(X, dtype=torch.long), torch.tensor(Y, dtype=torch.long)
    batch_len = len(corpus) // batch
    ind = torch.tensor(corpus[:batch * batch_len], dtype=torch.long).view(batch, batch_len)
    X = torch.stack([ind[:, i * steps:(i + 1) * steps] for i in range(n)])
    Y = torch.stack([ind[:, i * steps + 1:(i + 1) * steps + 1] for i in range(n)])
    return X, Y


class DeviceSteps:
    """The --mode eager/graph step: minibatches from fixed device buffers selected by a device counter, the loss summed
    on the device, the carried state in a fixed buffer; optionally captured once as a CUDA graph and replayed."""

    def __init__(self, a, model, params, opt, lr, clip, sampling, n, device, autocast):
        self.a, self.model, self.params, self.opt, self.lr, self.clip = a, model, params, opt, lr, clip
        self.sampling, self.device, self.autocast = sampling, device, autocast
        self.EX = torch.zeros((n, a.batch, a.steps), dtype=torch.long, device=device)
        self.EY = torch.zeros_like(self.EX)
        self.idx = torch.zeros(1, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.state = model.begin_state(a.batch, device)  # fixed buffers: the carried state (consecutive sampling)
        self.loss_fn = nn.CrossEntropyLoss()
        self.graph = None
        self.graph_error = None

    def start_epoch(self, X, Y):
        self.EX.copy_(X, non_blocking=True)
        self.EY.copy_(Y, non_blocking=True)
        self.idx.zero_()
        self.loss_sum.zero_()
        for t in states(self.state):
            t.zero_()

    def ops(self):
        X = self.EX.index_select(0, self.idx).squeeze(0)
        Y = self.EY.index_select(0, self.idx).squeeze(0)
        state = self.model.begin_state(self.a.batch, self.device) if self.sampling == "random" else self.state
        with self.autocast():
            out, new_state = self.model(X, state)
            l = self.loss_fn(out.float(), Y.T.reshape(-1))
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=False)
        else:
            for p in self.params:
                if p.grad is not None:
                    p.grad.zero_()
        l.backward()
        if self.clip is not None:
            grad_clipping(self.params, self.clip)
        if self.opt is not None:
            self.opt.step()
        else:
            with torch.no_grad():
                for p in self.params:
                    p.sub_(self.lr * p.grad)
        self.loss_sum.add_(l.detach() * Y.numel())
        self.idx.add_(1)
        if self.sampling != "random":
            for t, n in zip(states(self.state), states(new_state)):
                t.copy_(n.detach())

    def capture(self):
        """Warm-up steps on a side stream, undone, then the capture. Returns the error text if it failed."""
        saved = [p.detach().clone() for p in self.params]
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    self.ops()
            torch.cuda.current_stream().wait_stream(s)
            self.restore(saved)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                self.ops()
            self.graph = g
        except Exception as e:  # the best working variant (eager) runs instead
            self.graph_error = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            torch.cuda.synchronize()
        self.restore(saved)
        return self.graph_error

    def restore(self, saved):
        with torch.no_grad():
            for p, v in zip(self.params, saved):
                p.copy_(v)
            if self.opt is not None:
                for st in self.opt.state.values():
                    for v in st.values():
                        if torch.is_tensor(v):
                            v.zero_()
        self.idx.zero_()
        self.loss_sum.zero_()
        for t in states(self.state):
            t.zero_()

    def step(self):
        if self.graph is not None:
            self.graph.replay()
        else:
            self.ops()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["scratch", "concise"], default="scratch")
    ap.add_argument("--mode", choices=["book", "eager", "graph"], default="book")
    ap.add_argument("--cell", choices=["rnn", "gru", "lstm"], default="rnn", help="concise model's layer (nn.RNN/GRU/LSTM)")
    ap.add_argument("--sampling", choices=["random", "consecutive"])
    ap.add_argument("--optimizer", choices=["sgd", "adam"])
    ap.add_argument("--lr", type=float)
    ap.add_argument("--clip", help="theta, or 'none' (default: 0.01 for scratch, none for concise, as the book)")
    ap.add_argument("--epochs", type=int, default=250)
    ap.add_argument("--minibatches", type=int, help="time this many minibatches (cycling an epoch) instead of --epochs")
    ap.add_argument("--warmup", type=int, default=3, help="untimed minibatches before --minibatches")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=1, help="concise model's num_layers")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=35)
    ap.add_argument("--chars", default="10000", help="first N characters, or 'all'")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--predict", action="store_true", help="print the book's lines every 50 epochs (untimed)")
    ap.add_argument("--json", help="write the result here instead of stdout")
    ap.add_argument("--precision", choices=["fp32", "tf32", "bf16", "default"], default="fp32",
                    help="fp32: no TF32 anywhere (CharRnn's default); tf32: TF32 in cuDNN and matmuls (CharRnn --precision "
                         "tf32); bf16: autocast to bfloat16 (CharRnn --precision bf16); default: PyTorch's own defaults, "
                         "where cuDNN (so nn.RNN) may use TF32 but matmuls do not")
    a = ap.parse_args()
    if a.precision != "default":
        torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    if a.epochs < 2 and not a.minibatches:
        sys.exit("--epochs must be at least 2: the first is timed apart")

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
    if a.mode == "graph" and device.type != "cuda":
        sys.exit("--mode graph needs --device cuda")

    def autocast():
        if a.precision == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()

    corpus, char_to_idx, idx_to_char = load_corpus(a.corpus, None if a.chars == "all" else int(a.chars))
    V = len(idx_to_char)
    if (a.cell != "rnn" or a.layers != 1) and not concise:
        sys.exit("--cell gru|lstm and --layers need --model concise")
    model = ConciseRNN(V, a.hidden, a.cell, a.layers).to(device) if concise else ScratchRNN(V, a.hidden, device)
    params = list(model.parameters())
    graph_opt = a.mode == "graph"
    opt = (torch.optim.Adam(params, lr=lr, capturable=graph_opt) if graph_opt else torch.optim.Adam(params, lr=lr)) \
        if optimizer_name == "adam" else None
    loss_fn = nn.CrossEntropyLoss()
    data_iter = data_iter_random if sampling == "random" else data_iter_consecutive
    n_per_epoch = epoch_size(sampling, len(corpus), a.batch, a.steps)
    if n_per_epoch < 1:
        sys.exit(f"corpus of {len(corpus)} characters is too short for batch {a.batch} x steps {a.steps}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def book_step(X, Y, state):
        if state is None or sampling == "random":
            state = model.begin_state(X.shape[0], device)
        else:
            state = detach(state)
        with autocast():
            out, state = model(X, state)
            y = Y.T.reshape(-1)
            l = loss_fn(out.float(), y)
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
        "peer": "pytorch", "torch": torch.__version__, "model": a.model, "cell": a.cell, "mode": a.mode, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "precision": a.precision, "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "threads": torch.get_num_threads(), "sampling": sampling, "optimizer": optimizer_name, "lr": lr, "clip": clip,
        "vocab": V, "hidden": a.hidden, "layers": a.layers, "batch": a.batch, "steps": a.steps, "corpus_chars": len(corpus),
    }
    dev = None
    if a.mode != "book":
        dev = DeviceSteps(a, model, params, opt, lr, clip, sampling, n_per_epoch, device, autocast)

    def device_epoch():
        X, Y = epoch_batches(corpus, sampling, a.batch, a.steps, n_per_epoch)
        if device.type == "cuda":
            X, Y = X.pin_memory(), Y.pin_memory()
        dev.start_epoch(X, Y)
        for _ in range(n_per_epoch):
            dev.step()
        return dev.loss_sum

    if a.minibatches:
        start = time.perf_counter()
        if dev is not None:
            X, Y = epoch_batches(corpus, sampling, a.batch, a.steps, n_per_epoch)
            dev.start_epoch(X, Y)
            if a.mode == "graph":
                dev.capture()
                dev.start_epoch(X, Y)
            run = lambda i: dev.step() if i % n_per_epoch else (dev.idx.zero_(), dev.step())  # cycle the one epoch
            for i in range(a.warmup):
                run(i)
        else:
            batches = list(data_iter(corpus, a.batch, a.steps, device))
            state = None
            for i in range(a.warmup):
                _, _, state = book_step(*batches[i % len(batches)], state)
        sync(device)
        first = time.perf_counter() - start
        l_sum = torch.zeros((), device=device)
        n = 0
        if dev is not None:
            dev.loss_sum.zero_()
        start = time.perf_counter()
        for i in range(a.minibatches):
            k = (a.warmup + i) % n_per_epoch
            if dev is not None:
                run(a.warmup + i)
                n += a.batch * a.steps
            else:
                ls, c, state = book_step(*batches[k], None if k == 0 else state)
                l_sum += ls
                n += c
        sync(device)
        secs = time.perf_counter() - start
        total = dev.loss_sum if dev is not None else l_sum
        result.update(minibatches=a.minibatches, first_seconds=first, seconds=secs,
                      tokens_per_s=a.minibatches * a.batch * a.steps / secs, final_perplexity=math.exp(total.item() / n))
    else:
        epochs = []
        first = rest = 0.0
        start_first = time.perf_counter()
        if a.mode == "graph":
            X, Y = epoch_batches(corpus, sampling, a.batch, a.steps, n_per_epoch)
            dev.start_epoch(X, Y)
            random.seed(a.seed)  # the capture's epoch of minibatches was undone: draw the run's first epoch again
            dev.capture()
        for epoch in range(a.epochs):
            if epoch == 1:
                sync(device)
                first = time.perf_counter() - start_first
                start_rest = time.perf_counter()
            start = time.perf_counter()
            if dev is not None:
                loss = device_epoch()
                n = n_per_epoch * a.batch * a.steps
            else:
                loss = torch.zeros((), device=device)
                n = 0
                state = None
                for X, Y in data_iter(corpus, a.batch, a.steps, device):
                    ls, c, state = book_step(X, Y, state)
                    loss += ls
                    n += c
            # The book reads the loss each epoch; the device modes keep it on the device until the end.
            ppl = math.exp(loss.item() / n) if dev is None or a.predict or epoch == a.epochs - 1 else None
            epochs.append({"epoch": epoch + 1, "perplexity": ppl, "seconds": time.perf_counter() - start})
            if a.predict and (epoch + 1) % 50 == 0:
                print("epoch %d, perplexity %f, time %.2f sec" % (epoch + 1, ppl, epochs[-1]["seconds"]), file=sys.stderr)
                for prefix in ["分开", "不分开"]:
                    print(" -", predict(model, prefix, 50, char_to_idx, idx_to_char, device), file=sys.stderr)
        sync(device)
        rest = time.perf_counter() - start_rest
        timed = n_per_epoch * (a.epochs - 1)
        result.update(epochs=epochs, first_seconds=first, minibatches=timed, seconds=rest,
                      tokens_per_s=timed * a.batch * a.steps / rest, final_perplexity=epochs[-1]["perplexity"])
    if dev is not None:
        result.update(graph="on" if dev.graph is not None else "off", graph_error=dev.graph_error)
    if device.type == "cuda":
        result["max_memory_allocated"] = torch.cuda.max_memory_allocated(device)
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
