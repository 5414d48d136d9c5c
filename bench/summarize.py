#!/usr/bin/env python3
"""Prints the tables of a gpu-check run (scripts/gpu-check.sh) from the JSON files in one folder: per variant the
median over its rounds and the spread (min–max), each run's first epoch (or warm-up) apart, ratios of medians."""
import glob
import json
import os
import re
import statistics
import sys

d = sys.argv[1] if len(sys.argv) > 1 else "gpu-check-out"


def runs(pattern):
    out = []
    for p in sorted(glob.glob(os.path.join(d, pattern))):
        try:
            out.append(json.load(open(p)))
        except Exception as e:
            print(f"(unreadable {os.path.basename(p)}: {e})")
    return out


def get(r, *keys):
    for k in keys:
        if r.get(k) is not None:
            return r[k]
    return None


def tps(r):
    return get(r, "TokensPerSecond", "tokens_per_s")


def med(rs, f):
    v = [f(r) for r in rs if f(r) is not None]
    return (statistics.median(v), min(v), max(v), len(v)) if v else None


def fmt(m, spec="%.0f"):
    if m is None:
        return "—"
    mid, lo, hi, n = m
    return (spec % mid) + (f" ({spec % lo}–{spec % hi}, n={n})" if n > 1 else "")


def table(title, rows, epochs_label):
    print(title)
    print(f"| run | tokens/s, median (spread) | {epochs_label} | first epoch s | final ppl | peak MiB | fastest CharRnn ÷ this |")
    print("|---|---|---|---|---|---|---|")
    best = None
    for label, rs in rows:
        if label.startswith("CharRnn") and rs:
            m = med(rs, tps)
            best = m[0] if best is None or m[0] > best else best
    for label, rs in rows:
        if not rs:
            print(f"| {label} | (missing) | | | | | |")
            continue
        t = med(rs, tps)
        secs = med(rs, lambda r: get(r, "Seconds", "seconds"))
        first = med(rs, lambda r: get(r, "FirstSeconds", "first_seconds"))
        ppl = med(rs, lambda r: get(r, "FinalPerplexity", "final_perplexity"))
        mem = med(rs, lambda r: (get(r, "PeakDeviceBytes", "max_memory_allocated") or 0) / 2**20 or None)
        note = ""
        if rs[0].get("graph_error"):
            note = f" [graph capture failed: {rs[0]['graph_error'][:120]}; eager ran]"
        ratio = "" if best is None or label.startswith("CharRnn") else "%.2f×" % (best / t[0])
        print(f"| {label}{note} | {fmt(t)} | {fmt(secs, '%.3f')} | {fmt(first, '%.3f')} | {fmt(ppl, '%.4f')} | {fmt(mem, '%.0f')} | {ratio} |")
    print()


book_fast = runs("charrnn_book_fast_*.json")
epochs = (book_fast[0].get("EpochSeconds") and len(book_fast[0]["EpochSeconds"])) if book_fast else "?"
first_book = book_fast[0] if book_fast else {}
table(f"(a) the book's scratch-random run (V %s, H %s, B %s, T %s, {epochs} epochs; s = epochs 2..N)" % tuple(
    first_book.get(k, "?") for k in ("Vocab", "Hidden", "Batch", "Steps")), [
    ("CharRnn persistent + graph", book_fast),
    ("CharRnn persistent only (--graph off)", runs("charrnn_book_persistent_only.json")),
    ("CharRnn graph only (--recurrence steps)", runs("charrnn_book_graph_only.json")),
    ("CharRnn plain (--recurrence steps --graph off)", runs("charrnn_book_plain_*.json")),
    ("PyTorch nn.RNN + Linear, whole step in torch.cuda.graph", runs("torch_nnrnn_graph_*.json")),
    ("PyTorch nn.RNN + Linear, eager, pre-uploaded", runs("torch_nnrnn_eager_*.json")),
    ("PyTorch book 6.4 trainer (fewer epochs: rate only)", runs("torch_scratch_book_*.json")),
], "train s (timed epochs)")

if book_fast:
    r = book_fast[0]
    print("CharRnn paths: recurrence %s; graph %s" % (r.get("Recurrence"), r.get("Graph")))
    f = med(book_fast, lambda r: r.get("RecurrenceForwardMicrosPerStep"))
    b = med(book_fast, lambda r: r.get("RecurrenceBackwardMicrosPerStep"))
    pl = runs("charrnn_book_plain_*.json")
    fp = med(pl, lambda r: r.get("RecurrenceForwardMicrosPerStep"))
    bp = med(pl, lambda r: r.get("RecurrenceBackwardMicrosPerStep"))
    print(f"µs per recurrence step (device events): persistent forward {fmt(f, '%.2f')}, backward {fmt(b, '%.2f')}; "
          f"per-step path forward {fmt(fp, '%.2f')}, backward {fmt(bp, '%.2f')}")
    per_mb = med(book_fast, lambda r: 1e6 * r["Seconds"] / r["Minibatches"])
    print(f"µs per minibatch (fast path): {fmt(per_mb, '%.1f')}")
    whole = med(book_fast, lambda r: r["Seconds"] + r["FirstSeconds"])
    print(f"the whole run incl. its first epoch: {fmt(whole, '%.3f')} s")
    for cols in (2, 8, 16):
        c = runs(f"charrnn_book_cols{cols}.json")
        if c:
            print(f"CHARRNN_PERSISTENT_COLS={cols} ({len(c[0].get('EpochSeconds') or [])} epochs): {tps(c[0]):.0f} tokens/s, recurrence {c[0].get('Recurrence')}, "
                  f"fwd {c[0].get('RecurrenceForwardMicrosPerStep') or 0:.2f} / bwd {c[0].get('RecurrenceBackwardMicrosPerStep') or 0:.2f} µs/step")
    print()

first_large = (runs("charrnn_large_fp32_*.json") or [{}])[0]
shape = "H %s, B %s, T %s, full corpus V %s" % tuple(first_large.get(k, "?") for k in ("Hidden", "Batch", "Steps", "Vocab"))
for prec in ("fp32", "tf32", "bf16"):
    table(f"(b) large config, {prec.upper()} ({shape}; s = timed minibatches)", [
        (f"CharRnn {prec}", runs(f"charrnn_large_{prec}_*.json")),
        (f"PyTorch nn.RNN + Linear {prec} (eager, pre-uploaded)", runs(f"torch_large_{prec}_*.json")),
    ], "train s")
table("(b) large config, FP32: the persistent recurrence forced (auto runs cuBLAS per step at this size)", [
    ("CharRnn fp32 (auto: per-step)", runs("charrnn_large_fp32_*.json")),
    ("CharRnn fp32 --recurrence persistent", runs("charrnn_large_persistent.json")),
], "train s")
for cell in ("gru", "lstm"):
    table(f"(b) large config, {cell.upper()}, FP32", [
        (f"CharRnn {cell}", runs(f"charrnn_large_{cell}.json")),
        (f"PyTorch nn.{cell.upper()} + Linear", runs(f"torch_large_{cell}.json")),
    ], "train s")
large = runs("charrnn_large_fp32_1.json")
if large and large[0].get("SgemmGflopsPerSecond"):
    r = large[0]
    useful = r["UsefulFlopsPerStep"] * r["Minibatches"] / r["Seconds"] / 1e9
    print("cuBLAS SGEMM %d³: %.0f GFLOP/s; CharRnn's FP32 step: %.0f GFLOP/s useful = %.1f%% of it (%.0f executed)" % (
        r["SgemmSize"], r["SgemmGflopsPerSecond"], useful, 100 * useful / r["SgemmGflopsPerSecond"],
        r["FlopsPerStep"] * r["Minibatches"] / r["Seconds"] / 1e9))
    print()

train = sorted(glob.glob(os.path.join(d, "train", "train-*.txt")))
if train:
    print("(c) every preset on the card: perplexity at each report")
    for p in train:
        ppl = re.findall(r"^epoch (\d+), perplexity ([\d.]+)", open(p).read(), re.M)
        print(f"  {os.path.basename(p)[6:-4]}: " + ", ".join(f"{e}: {v}" for e, v in ppl))
