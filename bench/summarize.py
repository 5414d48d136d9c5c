#!/usr/bin/env python3
"""Prints the tables of a gpu-check run (scripts/gpu-check.sh) from the files in one folder (its $RAW, or its
gpu-check.tar.gz unpacked): per variant the median over its rounds and the spread (min–max), each run's first epoch (or
warm-up) apart, ratios of medians, which path, graph and plan each CharRnn row ran, whether the variants meant to give
equal bits did, and the runs that failed or were skipped. Usage: summarize.py DIR"""
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
            r = json.load(open(p))
            r["_file"] = os.path.basename(p)
            out.append(r)
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


def path(r):
    """What ran: CharRnn's recurrence path, graph and plan; PyTorch's mode."""
    if r.get("peer") == "pytorch":
        return r.get("mode", "?") + (" (eager: every op issued from Python)" if r.get("mode") == "eager" else "")
    # "cluster (16 × 8 blocks, 2 rows each); timed steps … µs, … a step": the plan, without auto's timings
    rec = (r.get("Recurrence") or "?").split("; timed")[0].split("; not timed")[0][:70]
    graph = "graph" if str(r.get("Graph", "")).startswith("on") else "no graph"
    plan = r.get("Plan")
    return f"{rec}, {graph}" + (f", plan {plan}" if plan else "")


def table(title, rows, seconds_label):
    print(title)
    print(f"| run | path | tokens/s, median (spread) | {seconds_label} | first epoch s | final ppl | peak MiB | fastest CharRnn ÷ this |")
    print("|---|---|---|---|---|---|---|---|")
    best = None
    for label, rs in rows:
        if label.startswith("CharRnn") and rs:
            m = med(rs, tps)
            best = m[0] if m and (best is None or m[0] > best) else best
    for label, rs in rows:
        if not rs:
            print(f"| {label} | | (missing) | | | | | |")
            continue
        t = med(rs, tps)
        secs = med(rs, lambda r: get(r, "Seconds", "seconds"))
        first = med(rs, lambda r: get(r, "FirstSeconds", "first_seconds"))
        ppl = med(rs, lambda r: get(r, "FinalPerplexity", "final_perplexity"))
        mem = med(rs, lambda r: (get(r, "PeakDeviceBytes", "max_memory_allocated") or 0) / 2**20 or None)
        note = ""
        if rs[0].get("graph_error"):
            note = f" [graph capture failed: {rs[0]['graph_error'][:120]}; eager ran]"
        paths = sorted({path(r) for r in rs})
        ratio = "" if best is None or label.startswith("CharRnn") or not t else "%.2f×" % (best / t[0])
        print(f"| {label}{note} | {'; '.join(paths)} | {fmt(t)} | {fmt(secs, '%.3f')} | {fmt(first, '%.3f')} | "
              f"{fmt(ppl, '%.4f')} | {fmt(mem, '%.0f')} | {ratio} |")
    print()


def trajectory(r):
    return get(r, "EpochPerplexities") or ([r["FinalPerplexity"]] if r.get("FinalPerplexity") is not None else None)


equal_checks = []


def same_bits(what, rs):
    """Variants (or rounds) that must give the same bits: graph replay = eager, and every repeat of one plan."""
    rs = [r for r in rs if trajectory(r)]
    if len(rs) < 2:
        equal_checks.append(f"- {what}: not checked ({len(rs)} run{'s' if len(rs) != 1 else ''} with perplexities)")
        return
    ref = trajectory(rs[0])
    for r in rs[1:]:
        t = trajectory(r)
        if t != ref:
            k = next((i for i, (a, b) in enumerate(zip(ref, t)) if a != b), min(len(ref), len(t)))
            equal_checks.append(f"- {what}: **DIFFER** ({rs[0]['_file']} vs {r['_file']}, first at epoch {k + 1}: "
                                f"{ref[k] if k < len(ref) else '—'!r} vs {t[k] if k < len(t) else '—'!r})")
            return
    equal_checks.append(f"- {what}: equal bits ({len(rs)} runs, {len(ref)} perplexit{'y' if len(ref) == 1 else 'ies'} "
                        f"each, as 64-bit doubles; on a GPU the run reads only its final one)")


book_fast = runs("charrnn_book_fast_*.json")
epochs = (book_fast[0].get("EpochSeconds") and len(book_fast[0]["EpochSeconds"])) if book_fast else "?"
first_book = book_fast[0] if book_fast else {}
book_rows = [
    ("CharRnn auto + graph (the default)", book_fast),
    ("CharRnn auto, --graph off", runs("charrnn_book_persistent_only_*.json")),
    ("CharRnn --recurrence steps (graph on)", runs("charrnn_book_graph_only_*.json")),
    ("CharRnn plain (--recurrence steps --graph off)", runs("charrnn_book_plain_*.json")),
    ("CharRnn --recurrence cluster", runs("charrnn_book_cluster_*.json")),
    ("PyTorch nn.RNN + Linear, whole step in torch.cuda.graph", runs("torch_nnrnn_graph_*.json")),
    ("PyTorch nn.RNN + Linear, eager, pre-uploaded", runs("torch_nnrnn_eager_*.json")),
    ("PyTorch book 6.4 trainer (fewer epochs: rate only)", runs("torch_scratch_book_*.json")),
]
table(f"(1) the book's scratch-random run (V %s, H %s, B %s, T %s, {epochs} epochs; s = epochs 2..N)" % tuple(
    first_book.get(k, "?") for k in ("Vocab", "Hidden", "Batch", "Steps")), book_rows, "train s (timed epochs)")
same_bits("book: every round of the default", book_fast)
same_bits("book: graph replay = eager (auto, graph on vs off)", book_fast[:1] + runs("charrnn_book_persistent_only_*.json"))
same_bits("book: graph replay = eager (per step, graph on vs off)",
          runs("charrnn_book_plain_*.json") + runs("charrnn_book_graph_only_*.json"))

if book_fast:
    f = med(book_fast, lambda r: r.get("RecurrenceForwardMicrosPerStep"))
    b = med(book_fast, lambda r: r.get("RecurrenceBackwardMicrosPerStep"))
    pl = runs("charrnn_book_plain_*.json")
    fp = med(pl, lambda r: r.get("RecurrenceForwardMicrosPerStep"))
    bp = med(pl, lambda r: r.get("RecurrenceBackwardMicrosPerStep"))
    print(f"µs per recurrence step, layer 1 (device events around 20 launches after the run): default path "
          f"forward {fmt(f, '%.2f')}, backward {fmt(b, '%.2f')}; per-step path launched eagerly (its launch gaps "
          f"included, which a graph removes) forward {fmt(fp, '%.2f')}, backward {fmt(bp, '%.2f')}")
    per_mb = med(book_fast, lambda r: 1e6 * r["Seconds"] / r["Minibatches"])
    print(f"µs per minibatch (default path): {fmt(per_mb, '%.1f')}")
    whole = med(book_fast, lambda r: r["Seconds"] + (r.get("FirstSeconds") or 0))
    print(f"the whole run incl. its first epoch: {fmt(whole, '%.3f')} s")
    for cols in (2, 8, 16):
        c = runs(f"charrnn_book_cols{cols}.json")
        if c:
            print(f"CHARRNN_PERSISTENT_COLS={cols} ({len(c[0].get('EpochSeconds') or []) + 1} epochs): {tps(c[0]):.0f} tokens/s, {path(c[0])}, "
                  f"fwd {c[0].get('RecurrenceForwardMicrosPerStep') or 0:.2f} / bwd {c[0].get('RecurrenceBackwardMicrosPerStep') or 0:.2f} µs/step")
    print()

first_large = (runs("charrnn_large_fp32_*.json") or [{}])[0]
shape = "H %s, B %s, T %s, full corpus V %s" % tuple(first_large.get(k, "?") for k in ("Hidden", "Batch", "Steps", "Vocab"))
for prec in ("fp32", "tf32", "bf16"):
    table(f"(2) large config, {prec.upper()} ({shape}; s = timed minibatches)", [
        (f"CharRnn {prec}", runs(f"charrnn_large_{prec}_*.json")),
        (f"PyTorch nn.RNN + Linear {prec} (eager, pre-uploaded)", runs(f"torch_large_{prec}_*.json")),
    ], "train s")
    same_bits(f"large {prec}: every round", runs(f"charrnn_large_{prec}_*.json"))
table("(2) large config, FP32: the persistent recurrence forced", [
    ("CharRnn fp32 (auto)", runs("charrnn_large_fp32_*.json")),
    ("CharRnn fp32 --recurrence persistent", runs("charrnn_large_persistent.json")),
], "train s")
large = runs("charrnn_large_fp32_1.json")
if large and large[0].get("SgemmGflopsPerSecond"):
    r = large[0]
    useful = r["UsefulFlopsPerStep"] * r["Minibatches"] / r["Seconds"] / 1e9
    print("cuBLAS SGEMM %d³: %.0f GFLOP/s; CharRnn's FP32 step: %.0f GFLOP/s useful = %.1f%% of it (%.0f executed)" % (
        r["SgemmSize"], r["SgemmGflopsPerSecond"], useful, 100 * useful / r["SgemmGflopsPerSecond"],
        r["FlopsPerStep"] * r["Minibatches"] / r["Seconds"] / 1e9))
    print()

for cell in ("gru", "lstm"):
    table(f"(3) {cell}-concise at the book's shapes, FP32 (s = epochs 2..N)", [
        (f"CharRnn {cell}-concise (auto: the timed plan)", runs(f"charrnn_{cell}_book_*.json")),
        (f"CharRnn {cell}-concise --recurrence steps", runs(f"charrnn_{cell}_perstep_*.json")),
        (f"PyTorch nn.{cell.upper()} + Linear, whole step in torch.cuda.graph", runs(f"torch_{cell}_book_graph_*.json")),
    ], "train s")
    same_bits(f"{cell}-concise: every round", runs(f"charrnn_{cell}_book_*.json"))
crnn = runs("charrnn_lstm_charrnn_*.json")
table("(3) LSTM %s × %s, B %s, T %s, Adam, full corpus, FP32 (char-rnn's size class; s = timed minibatches)" % tuple(
    (crnn[0] if crnn else {}).get(k, "?") for k in ("Layers", "Hidden", "Batch", "Steps")), [
    ("CharRnn", crnn),
    ("PyTorch nn.LSTM + Linear, whole step in torch.cuda.graph", runs("torch_lstm_charrnn_graph_*.json")),
], "train s")
for cell in ("gru", "lstm"):
    table(f"(6) large config, {cell.upper()}, FP32", [
        (f"CharRnn {cell}", runs(f"charrnn_large_{cell}.json")),
        (f"PyTorch nn.{cell.upper()} + Linear (eager)", runs(f"torch_large_{cell}.json")),
    ], "train s")

plans = os.path.join(d, "plans.json")
if os.path.exists(plans):
    print("Recurrence plans --recurrence auto timed on the card (µs per step, forward + backward, on scratch tensors):")
    try:
        for key, e in sorted(json.load(open(plans)).items()):
            shape = " | ".join(key.split(" | ")[1:3])
            print(f"  {shape}: runs {e['plan']}; " + ", ".join(f"{t['plan']} {t['us_per_step']:.1f}" for t in e["timings"]))
    except Exception as ex:
        print(f"  (unreadable: {ex})")
    print()

print("Variants that must give equal bits:")
print("\n".join(equal_checks))
print()

train = sorted(glob.glob(os.path.join(d, "train", "train-*.out")))
if train:
    print("(8) every preset on the card: perplexity at each report")
    for p in train:
        ppl = re.findall(r"^epoch (\d+), perplexity ([\d.]+)", open(p, errors="replace").read(), re.M)
        print(f"  {os.path.basename(p)[6:-4]}: " + (", ".join(f"{e}: {v}" for e, v in ppl) or "(no report: see its .err)"))
    print()

for f in ("tests-summary.txt",):
    p = os.path.join(d, f)
    if os.path.exists(p):
        print("(4) " + open(p, errors="replace").read().strip())
        print()

bad = []
console = os.path.join(d, "console.log")
if os.path.exists(console):
    for line in open(console, errors="replace"):
        if line.startswith(("FAILED ", "SKIPPED ")):
            bad.append("- " + line.strip()[:240])
print("Runs that failed or were skipped (their .err files hold the reason):")
print("\n".join(bad) if bad else "- none")
