#!/usr/bin/env python3
"""Prints the compact table of a gpu-check (or cpu-vs-pytorch) run from the JSON files in one folder."""
import json
import os
import sys

d = sys.argv[1] if len(sys.argv) > 1 else "gpu-check-out"


def load(name):
    p = os.path.join(d, name)
    return json.load(open(p)) if os.path.exists(p) else None


def row(label, r):
    if r is None:
        return f"| {label} | (missing) | | | |"
    gflops = r.get("GflopsPerSecond")
    return "| %s | %.3f | %.0f | %.4f | %s |" % (
        label, r.get("Seconds", r.get("seconds")), r.get("TokensPerSecond", r.get("tokens_per_s")),
        r.get("FinalPerplexity", r.get("final_perplexity")), "%.0f" % gflops if gflops else "")


def ratio(a, b):
    if a is None or b is None:
        return "n/a"
    ta = a.get("TokensPerSecond", a.get("tokens_per_s"))
    tb = b.get("TokensPerSecond", b.get("tokens_per_s"))
    return "%.2f×" % (ta / tb)


ours, scratch, nnrnn = load("charrnn_book.json"), load("torch_scratch_book.json"), load("torch_nnrnn_book.json")
large, tlarge = load("charrnn_large.json"), load("torch_large.json")
large_tf32, tlarge_tf32, tlarge_default = load("charrnn_large_tf32.json"), load("torch_large_tf32.json"), load("torch_large_default.json")
print("(a) book scratch-random config (V 1027, H 256, B 32, T 35)")
print("| run | train s | tokens/s | final ppl | GFLOP/s |")
print("|---|---|---|---|---|")
print(row("CharRnn cuda", ours))
print(row("PyTorch 6.4 scratch", scratch))
print(row("PyTorch nn.RNN (cuDNN, FP32)", nnrnn))
print(f"CharRnn vs PyTorch scratch: {ratio(ours, scratch)}; vs nn.RNN: {ratio(ours, nnrnn)}")
print()
print("(b) large config (H 1024, B 256, T 35, full corpus)")
print("| run | train s | tokens/s | ppl | GFLOP/s |")
print("|---|---|---|---|---|")
print(row("CharRnn cuda (FP32)", large))
print(row("PyTorch nn.RNN + Linear (FP32)", tlarge))
print(row("CharRnn cuda --tf32", large_tf32))
print(row("PyTorch nn.RNN + Linear (TF32)", tlarge_tf32))
print(row("PyTorch nn.RNN + Linear (PyTorch defaults)", tlarge_default))
print(f"CharRnn vs PyTorch nn.RNN: FP32 {ratio(large, tlarge)}; TF32 {ratio(large_tf32, tlarge_tf32)}; "
      f"CharRnn FP32 vs PyTorch defaults {ratio(large, tlarge_default)}")
if large and large.get("SgemmGflopsPerSecond"):
    print("cuBLAS SGEMM %d³: %.0f GFLOP/s; CharRnn training step: %.0f GFLOP/s = %.1f%% of it" % (
        large["SgemmSize"], large["SgemmGflopsPerSecond"], large["GflopsPerSecond"],
        100 * large["GflopsPerSecond"] / large["SgemmGflopsPerSecond"]))
