using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;
using CharRnn.Rnn.Devices;

namespace CharRnn.Cli;

internal static class BenchCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr, CancellationToken cancel = default)
    {
        var config = new Option<string>("--config")
        {
            Description = "book: a whole run of --preset (default 250 epochs), timed without start-up or generation. " +
                          "large: H 1024, B 256, T 35 on the full corpus, a fixed number of minibatches (--minibatches).",
            DefaultValueFactory = _ => "book",
        };
        config.AcceptOnlyFromAmong("book", "large");
        var preset = new Option<string>("--preset") { Description = "Preset for the book config.", DefaultValueFactory = _ => "scratch-random" };
        preset.AcceptOnlyFromAmong(TrainOptions.PresetNames);
        var epochs = new Option<int?>("--epochs") { Description = "Epochs for the book config (default: the preset's 250)." };
        var minibatches = new Option<int>("--minibatches") { Description = "Timed minibatches for the large config.", DefaultValueFactory = _ => 100 };
        var hidden = new Option<int?>("--hidden") { Description = "Override H." };
        var cell = new Option<string?>("--cell") { Description = "Override the cell: rnn, gru or lstm (e.g. --config large --cell lstm)." };
        cell.AcceptOnlyFromAmong("rnn", "gru", "lstm");
        var batch = new Option<int?>("--batch") { Description = "Override B." };
        var steps_ = new Option<int?>("--steps") { Description = "Override T." };
        var layers = new Option<int?>("--layers") { Description = "Override the stacked layers (e.g. --preset lstm-concise --layers 2 --hidden 512 --batch 64 --steps 50: char-rnn's size class)." };
        var sgemm = new Option<int?>("--sgemm") { Description = "Also measure an n×n×n SGEMM on the same device (default: 8192 on a GPU, 2048 on the CPU; 0 = skip)." };
        var device = CommonOptions.Device();
        var precision = CommonOptions.Precision();
        var recurrence = CommonOptions.Recurrence();
        var graph = CommonOptions.Graph();
        var blas = CommonOptions.Blas();
        var input = CommonOptions.Input();
        var json = new Option<string?>("--json") { Description = "Write the result as JSON to this file (atomically)." };
        var corpus = CommonOptions.Corpus();
        var profile = new Option<bool>("--profile") { Description = "Also print the time per backend op (each op synchronised; slower overall)." };

        var cmd = new Command("bench", "Time training (tokens/s, GFLOP/s) on one device, without start-up or generation.");
        foreach (var o in new Option[] { config, preset, epochs, minibatches, hidden, cell, batch, steps_, layers, sgemm, device, precision, recurrence, graph, blas, input, json, corpus, profile }) cmd.Options.Add(o);
        cmd.SetAction(pr => Program.Guard(stderr, () =>
        {
            var path = pr.GetValue(corpus) ?? OptionValues.DefaultCorpus();
            if (pr.GetValue(json) is string jsonPath) AtomicFile.CheckWritable(jsonPath, "--json", (path, "--corpus")); // before the run, not after
            bool large = pr.GetValue(config) == "large";
            var o = TrainOptions.Preset(pr.GetValue(preset)!);
            if (large) o = o with { Hidden = 1024, Batch = 256, Steps = 35 };
            o = o with
            {
                Epochs = pr.GetValue(epochs) ?? o.Epochs,
                Hidden = pr.GetValue(hidden) ?? o.Hidden,
                Batch = pr.GetValue(batch) ?? o.Batch,
                Steps = pr.GetValue(steps_) ?? o.Steps,
                Layers = pr.GetValue(layers) ?? o.Layers,
                Cell = pr.GetValue(cell) switch { "rnn" => CellKind.Rnn, "gru" => CellKind.Gru, "lstm" => CellKind.Lstm, _ => o.Cell },
                Input = CommonOptions.InputMode(pr.GetValue(input)),
            };
            o.Validate();
            if (!large && o.Epochs < 2) throw new CharRnnException($"--epochs must be at least 2 for the book config: the first epoch (compilation, warm-up) is timed apart (got {o.Epochs}).");
            int steps = pr.GetValue(minibatches);
            if (steps < 1) throw new CharRnnException($"--minibatches must be a positive whole number (got {steps}).");
            var data = Corpus.Load(path, large ? null : Corpus.BookCharCount);
            using var be = BackendFactory.Create(pr.GetValue(device)!, pr.GetValue(blas), stderr, CommonOptions.Gpu(pr.GetValue(precision)!, pr.GetValue(recurrence)!, pr.GetValue(graph)!));
            var profiler = pr.GetValue(profile) ? new OpProfiler() : null;
            be.Profiler = profiler;
            stderr.WriteLine($"charrnn bench: {(large ? "large" : pr.GetValue(preset))} on {be.Description}");
            var r = large
                ? Benchmark.Steps(be, data, o, "large", steps, cancel: cancel)
                : Benchmark.Run(be, data, o, "book/" + pr.GetValue(preset), cancel);
            be.Profiler = null; // the SGEMM rate is measured on its own
            int n = pr.GetValue(sgemm) ?? (be.RunsOnHost ? 2048 : 8192);
            if (n > 0) r = r with { SgemmGflopsPerSecond = Benchmark.SgemmRate(be, n), SgemmSize = n };
            var inv = CultureInfo.InvariantCulture;
            stdout.WriteLine(string.Create(inv, $"device: {r.Description}"));
            stdout.WriteLine(string.Create(inv, $"config {r.Config}: {r.Cell} × {r.Layers}, V {r.Vocab}, H {r.Hidden}, B {r.Batch}, T {r.Steps}, {r.Minibatches} minibatches timed, input {r.Input}"));
            if (!be.RunsOnHost) stdout.WriteLine($"recurrence {r.Recurrence}; training step as a CUDA graph: {r.Graph}");
            stdout.WriteLine(string.Create(inv, $"first {(large ? "3 warm-up minibatches" : "epoch")} {r.FirstSeconds:F3} s (compilation, graph recording, warm-up: apart from what follows)"));
            stdout.WriteLine(string.Create(inv, $"time {r.Seconds:F3} s, {r.TokensPerSecond:F0} tokens/s, {r.GflopsPerSecond:F1} GFLOP/s (GEMMs executed), {r.UsefulGflopsPerSecond:F1} GFLOP/s useful (no one-hot products), final perplexity {r.FinalPerplexity:F6}"));
            if (r.SgemmGflopsPerSecond is double g)
                stdout.WriteLine(string.Create(inv, $"sgemm {r.SgemmSize}³: {g:F1} GFLOP/s; the training step's useful FLOPs run at {100 * r.UsefulGflopsPerSecond / g:F1}% of it ({100 * r.GflopsPerSecond / g:F1}% counting what it executes)"));
            if (r.RecurrenceForwardMicrosPerStep is double f && r.RecurrenceBackwardMicrosPerStep is double b)
                stdout.WriteLine(string.Create(inv, $"recurrence alone (layer 1, device events around 20 launches): forward {f:F2} µs/step, backward {b:F2} µs/step"));
            if (r.PeakDeviceBytes is long peak)
                stdout.WriteLine(string.Create(inv, $"peak device memory {peak / 1048576.0:F1} MiB in CharRnn's buffers (cuBLAS's workspace not counted)"));
            if (profiler != null)
            {
                var times = profiler.Times;
                double all = times.Values.Sum(t => t.Seconds);
                stdout.WriteLine(string.Create(inv, $"profile ({all:F3} s in ops of {r.Seconds:F3} s):"));
                foreach (var (op, (s, c)) in times.OrderByDescending(kv => kv.Value.Seconds))
                    stdout.WriteLine(string.Create(inv, $"  {op,-28} {s,8:F3} s {100 * s / all,5:F1}%  {c,7} calls  {1e6 * s / c,9:F1} µs/call"));
            }
            if (pr.GetValue(json) is string file) AtomicFile.WriteAllText(file, JsonSerializer.Serialize(r, BenchJson.Default.BenchResult));
            return 0;
        }));
        return cmd;
    }
}

[System.Text.Json.Serialization.JsonSourceGenerationOptions(WriteIndented = true)]
[System.Text.Json.Serialization.JsonSerializable(typeof(BenchResult))]
internal sealed partial class BenchJson : System.Text.Json.Serialization.JsonSerializerContext;
