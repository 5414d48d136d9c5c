#!/usr/bin/python3
"""Writes the *_wide.json golden files: the same quantities as the original four (README.md), at sizes where every
vector path of the CPU kernels and its tail run (H = 13 and 4H = 52 not multiples of 8, V = 11, B = 5, T = 6).

The original files use H = 5 < 8 lanes: a sign flipped in the vectorised LSTM backward survived every golden test
(#26). Float64 PyTorch autograd (Debian's python3-torch 1.13), checked against torch.autograd.gradcheck, and the
Adam steps against a hand-written Adam. Usage: /usr/bin/python3 make_wide.py [OUT_DIR]  (default: this folder).
"""
import json
import os
import sys

import torch
from torch import nn

V, H, B, T = 11, 13, 5, 6
THETA, SGD_LR, ADAM_LR = 0.01, 100.0, 1e-3
SEED = 20261202


def enc(t):
    t = t.detach()
    data = [int(x) for x in t.reshape(-1).tolist()] if not t.is_floating_point() else [float(x) for x in t.reshape(-1).tolist()]
    return {"shape": list(t.shape), "data": data}


class Scratch(nn.Module):
    """Book 6.4's rnn: H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h), Y_t = H_t W_hq + b_q."""

    def __init__(self):
        super().__init__()
        g = lambda *s: nn.Parameter(torch.randn(*s, dtype=torch.float64) * 0.4)
        self.W_xh, self.W_hh, self.b_h = g(V, H), g(H, H), g(H)
        self.W_hq, self.b_q = g(H, V), g(V)

    def forward(self, x, state):
        (h,) = state
        hs = []
        for t in range(x.shape[0]):
            h = torch.tanh(x[t] @ self.W_xh + h @ self.W_hh + self.b_h)
            hs.append(h)
        hidden = torch.stack(hs)
        return torch.cat([s @ self.W_hq + self.b_q for s in hs], dim=0), hidden, (h,)


class Concise(nn.Module):
    """Book 6.5's RNNModel: nn.RNN/GRU/LSTM (1 layer, seq-first) + nn.Linear as dense."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind]
        self.rnn = cls(V, H).double()
        self.dense = nn.Linear(H, V).double()
        with torch.no_grad():  # wider than PyTorch's U(±1/√H): the gates leave their linear range
            for p in self.parameters():
                p.uniform_(-0.6, 0.6)

    def forward(self, x, state):
        out, st = self.rnn(x, state if self.kind == "lstm" else state[0])
        st = st if self.kind == "lstm" else (st,)
        return self.dense(out.reshape(-1, H)), out, st


def named(model):
    return [(n, p) for n, p in model.named_parameters()]


def loss_of(model, X, Y, state):
    x = nn.functional.one_hot(X.T, V).double()
    logits, hidden, final = model(x, state)
    labels = Y.T.reshape(-1)
    return nn.functional.cross_entropy(logits, labels), logits, hidden, final, labels


def clip_(grads, theta):
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    clipped = bool(norm > theta)
    return ([g * (theta / norm) for g in grads] if clipped else list(grads)), float(norm), clipped


def hand_adam(p, g, m, v, k, lr=ADAM_LR, b1=0.9, b2=0.999, eps=1e-8):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    p = p - (lr / (1 - b1 ** k)) * m / (torch.sqrt(v) / (1 - b2 ** k) ** 0.5 + eps)
    return p, m, v


def adam_run(make, base_state, X, Y, state, clipped):
    model = make()
    model.load_state_dict(base_state)
    opt = torch.optim.Adam(model.parameters(), lr=ADAM_LR)
    hand = {n: (p.detach().clone(), torch.zeros_like(p), torch.zeros_like(p)) for n, p in named(model)}
    out = {}
    for k in (1, 2):
        opt.zero_grad()
        loss, *_ = loss_of(model, X, Y, state)
        loss.backward()
        names = [n for n, _ in named(model)]
        grads = [p.grad for _, p in named(model)]
        if clipped:
            grads, _, _ = clip_(grads, THETA)
            for (_, p), g in zip(named(model), grads):
                p.grad = g.clone()
        step = {"loss_before_step": float(loss), "grads_used": {n: enc(g) for n, g in zip(names, grads)}}
        opt.step()
        for n, g in zip(names, grads):
            hand[n] = hand_adam(hand[n][0], g, hand[n][1], hand[n][2], k)
        params = dict(named(model))
        for n in names:
            st = opt.state[params[n]]
            assert torch.allclose(params[n], hand[n][0], atol=1e-14, rtol=0), f"Adam {n} step {k}"
            assert torch.allclose(st["exp_avg"], hand[n][1], atol=1e-14, rtol=0)
            assert torch.allclose(st["exp_avg_sq"], hand[n][2], atol=1e-14, rtol=0)
        step["params_after"] = {n: enc(params[n]) for n in names}
        step["exp_avg"] = {n: enc(opt.state[params[n]]["exp_avg"]) for n in names}
        step["exp_avg_sq"] = {n: enc(opt.state[params[n]]["exp_avg_sq"]) for n in names}
        out[f"step{k}"] = step
    return out


def make_file(kind, path):
    torch.manual_seed(SEED + len(kind) * 7 + (1 if kind == "scratch" else 0))
    make = Scratch if kind == "scratch" else (lambda: Concise(kind))
    model = make()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    seq = torch.randint(0, V, (B, T + 1))
    X, Y = seq[:, :T], seq[:, 1:]
    H0 = torch.randn(*((B, H) if kind == "scratch" else (1, B, H)), dtype=torch.float64) * 0.5
    C0 = torch.randn(1, B, H, dtype=torch.float64) * 0.5 if kind == "lstm" else None
    h0 = H0.clone().requires_grad_(True)
    c0 = C0.clone().requires_grad_(True) if C0 is not None else None
    state = (h0,) if kind != "lstm" else (h0, c0)
    loss, logits, hidden, final, labels = loss_of(model, X, Y, state)
    loss.backward()
    names = [n for n, _ in named(model)]
    grads = [p.grad.clone() for _, p in named(model)]
    h0_grad = h0.grad.clone()
    c0_grad = c0.grad.clone() if c0 is not None else None
    state = tuple(t.detach() for t in state)  # later passes (gradcheck, Adam) must not add to the state's gradients
    # gradcheck of the loss against every parameter (the initial state held fixed)
    assert torch.autograd.gradcheck(lambda *ps: functional_loss(model, dict(zip(names, ps)), X, Y, state),
                                    [p.detach().clone().requires_grad_(True) for _, p in named(model)])
    clipped_grads, norm, was_clipped = clip_(grads, THETA)
    params = dict(named(model))
    squeeze = (lambda t: t[0]) if kind != "scratch" else (lambda t: t)
    d = {
        "_meta": {"generator": "tests/CharRnn.Tests/golden/make_wide.py", "torch": torch.__version__},
        "description": f"{kind} at V {V}, H {H}, B {B}, T {T}: every vector path and its tail (see make_wide.py)",
        "config": {"vocab": V, "hidden": H, "batch": B, "steps": T, "seed": SEED, "kind": kind, "clip_theta": THETA,
                   "sgd_lr": SGD_LR, "adam": {"lr": ADAM_LR, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}},
        "inputs": {"seq": enc(seq), "X": enc(X), "Y": enc(Y), "H0": enc(squeeze(H0))},
        "params": {n: enc(p) for n, p in params.items()},
        "forward": {"logits": enc(logits), "labels_time_major": enc(labels), "hidden_states": enc(hidden),
                    "H_final": enc(squeeze(final[0])), "loss": float(loss), "perplexity": float(torch.exp(loss))},
        "grads": {**{n: enc(g) for n, g in zip(names, grads)}, "H0": enc(squeeze(h0_grad))},
        "clip": {"norm": norm, "clipped": was_clipped, "grads": {n: enc(g) for n, g in zip(names, clipped_grads)}},
        "sgd_step": {n: enc(params[n] - SGD_LR * g) for n, g in zip(names, clipped_grads)},
        "adam_unclipped": adam_run(make, base_state, X, Y, state, clipped=False),
        "adam_clipped": adam_run(make, base_state, X, Y, state, clipped=True),
    }
    if C0 is not None:
        d["inputs"]["C0"] = enc(C0[0])
        d["forward"]["C_final"] = enc(final[1][0])
        d["grads"]["C0"] = enc(c0_grad[0])
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(d, fh)
    back = json.load(open(path, encoding="utf-8"))
    lg = torch.tensor(back["forward"]["logits"]["data"], dtype=torch.float64).reshape(T * B, V)
    again = nn.functional.cross_entropy(lg, torch.tensor(back["forward"]["labels_time_major"]["data"]))
    assert abs(float(again) - back["forward"]["loss"]) < 1e-12, "loss recomputed from the stored logits"


def functional_loss(m, params, X, Y, state):
    x = nn.functional.one_hot(X.T, V).double()
    logits, _, _ = torch.nn.utils.stateless.functional_call(m, params, (x, tuple(s.detach() for s in state)))
    return nn.functional.cross_entropy(logits, Y.T.reshape(-1))


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for kind, name in (("scratch", "rnn_scratch_wide.json"), ("rnn", "rnn_torch_wide.json"), ("gru", "gru_torch_wide.json"), ("lstm", "lstm_torch_wide.json")):
        make_file(kind, os.path.join(out, name))
        print("wrote", name)
