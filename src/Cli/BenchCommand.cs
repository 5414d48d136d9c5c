using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Training;

namespace CharRnn.Cli;

internal static class BenchCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
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
        var batch = new Option<int?>("--batch") { Description = "Override B." };
        var sgemm = new Option<int?>("--sgemm") { Description = "Also measure an n×n×n SGEMM on the same device (default: 8192 on a GPU, 2048 on the CPU; 0 = skip)." };
        var device = CommonOptions.Device();
        var tf32 = CommonOptions.Tf32();
        var blas = CommonOptions.Blas();
        var input = CommonOptions.Input();
        var json = new Option<string?>("--json") { Description = "Write the result as JSON to this file (atomically)." };
        var corpus = CommonOptions.Corpus();
        var profile = new Option<bool>("--profile") { Description = "Also print the time per backend op (each op synchronised; slower overall)." };

        var cmd = new Command("bench", "Time training (tokens/s, GFLOP/s) on one device, without start-up or generation.");
        foreach (var o in new Option[] { config, preset, epochs, minibatches, hidden, batch, sgemm, device, tf32, blas, input, json, corpus, profile }) cmd.Options.Add(o);
        cmd.SetAction(pr => Program.Guard(stderr, () =>
        {
            var path = pr.GetValue(corpus) ?? OptionValues.DefaultCorpus();
            bool large = pr.GetValue(config) == "large";
            var o = TrainOptions.Preset(pr.GetValue(preset)!);
            if (large) o = o with { Hidden = 1024, Batch = 256, Steps = 35 };
            o = o with
            {
                Epochs = pr.GetValue(epochs) ?? o.Epochs,
                Hidden = pr.GetValue(hidden) ?? o.Hidden,
                Batch = pr.GetValue(batch) ?? o.Batch,
                Input = CommonOptions.InputMode(pr.GetValue(input)),
            };
            o.Validate();
            int steps = pr.GetValue(minibatches);
            if (steps < 1) throw new CharRnnException($"--minibatches must be a positive whole number (got {steps}).");
            var data = Corpus.Load(path, large ? null : Corpus.BookCharCount);
            using var be = BackendFactory.Create(pr.GetValue(device)!, pr.GetValue(blas), stderr, pr.GetValue(tf32));
            var profiler = pr.GetValue(profile) ? new OpProfiler() : null;
            be.Profiler = profiler;
            stderr.WriteLine($"charrnn bench: {(large ? "large" : pr.GetValue(preset))} on {be.Description}");
            var r = large
                ? Benchmark.Steps(be, data, o, "large", steps)
                : Benchmark.Run(be, data, o, "book/" + pr.GetValue(preset));
            be.Profiler = null; // the SGEMM rate is measured on its own
            int n = pr.GetValue(sgemm) ?? (be.RunsOnHost ? 2048 : 8192);
            if (n > 0) r = r with { SgemmGflopsPerSecond = Benchmark.SgemmRate(be, n), SgemmSize = n };
            var inv = CultureInfo.InvariantCulture;
            stdout.WriteLine(string.Create(inv, $"device: {r.Description}"));
            stdout.WriteLine(string.Create(inv, $"config {r.Config}: V {r.Vocab}, H {r.Hidden}, B {r.Batch}, T {r.Steps}, {r.Minibatches} minibatches, input {r.Input}"));
            stdout.WriteLine(string.Create(inv, $"time {r.Seconds:F3} s, {r.TokensPerSecond:F0} tokens/s, {r.GflopsPerSecond:F1} GFLOP/s (GEMMs executed), final perplexity {r.FinalPerplexity:F6}"));
            if (r.SgemmGflopsPerSecond is double g)
                stdout.WriteLine(string.Create(inv, $"sgemm {r.SgemmSize}³: {g:F1} GFLOP/s; training step reaches {100 * r.GflopsPerSecond / g:F1}% of it"));
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
