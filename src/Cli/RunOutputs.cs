using System.Globalization;
using System.Text;
using System.Text.Json;
using CharRnn.Rnn;
using CharRnn.Rnn.Training;

namespace CharRnn.Cli;

/// <summary>
/// <c>--metrics FILE.jsonl</c>: one JSON object per epoch, and per report with --print-every Nit (those carry
/// "minibatch", the minibatches done in their epoch; every point carries "step", the run's minibatches). The whole file is rewritten atomically each epoch (temp file,
/// rename), so it is always complete: a crash leaves the epochs up to the last finished one.
/// </summary>
internal sealed class MetricsWriter
{
    readonly string _path, _device;
    readonly StringBuilder _lines = new();

    /// <param name="history">The run's epochs before this process (a resume): written first, so the file holds one history.</param>
    public MetricsWriter(string path, string device, IEnumerable<EpochStats> history)
    {
        (_path, _device) = (path, device);
        foreach (var s in history) Append(s);
    }

    void Append(EpochStats s)
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            void Number(string name, double? v)
            {
                if (v is double x) w.WriteNumber(name, x); else w.WriteNull(name);
            }
            w.WriteStartObject();
            w.WriteNumber("epoch", s.Epoch);
            if (s.Minibatch is int m) w.WriteNumber("minibatch", m);
            if (s.Step is long step) w.WriteNumber("step", step);
            Number("perplexity", s.Perplexity);
            Number("val_perplexity", s.ValPerplexity);
            Number("bits_per_char", EpochStats.Bits(s.Perplexity));
            Number("val_bits_per_char", s.ValPerplexity is double v ? EpochStats.Bits(v) : null);
            Number("seconds", s.Seconds);
            Number("tokens_per_s", s.TokensPerSecond);
            w.WriteString("device", _device);
            Number("learning_rate", s.LearningRate);
            Number("grad_norm", s.GradNorm);
            if (s.CommWaitMs is double cw) w.WriteNumber("comm_wait_ms", cw); // several ranks only: one rank's lines stay as they were
            w.WriteEndObject();
        }
        _lines.Append(Encoding.UTF8.GetString(buffer.ToArray())).Append('\n');
    }

    public void Add(EpochStats s)
    {
        Append(s);
        AtomicFile.WriteAllText(_path, _lines.ToString());
    }
}

/// <summary><c>--plot FILE.png|.svg</c>: perplexity per epoch on a log scale, train and validation, with ScottPlot.</summary>
internal static class PlotWriter
{
    const string FontName = "DejaVu Sans";
    static bool s_fontAdded;

    public static void CheckPath(string path, params (string? Path, string Flag)[] inputs)
    {
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is not (".png" or ".svg"))
            throw new CharRnnException($"--plot must name a .png or .svg file (got '{path}').");
        AtomicFile.CheckWritable(path, "--plot", inputs);
        // Plots are drawn by SkiaSharp's native library: a lone NativeAOT binary without it beside must say so before training.
        if (!System.Runtime.InteropServices.NativeLibrary.TryLoad("libSkiaSharp", typeof(SkiaSharp.SKBitmap).Assembly, null, out _))
            throw new CharRnnException($"--plot needs SkiaSharp's native library (libSkiaSharp.so) beside charrnn in {AppContext.BaseDirectory}; " +
                                       "the release folder has it (or drop --plot and use --metrics).");
    }

    /// <summary>
    /// Ticks for a log axis from <paramref name="lo"/> to <paramref name="hi"/> at round numbers: the sparsest of the
    /// mantissa sets {1}, {1, 2, 5}, {1, 1.5, 2, 3, 5, 7}, {1, 1.5, …, 9.5 in halves} … that gives at least 4 major ticks
    /// in range (at most 12), and the next denser set as minor ticks.
    /// </summary>
    internal static (List<double> Major, List<double> Minor) LogTicks(double lo, double hi)
    {
        double[][] sets =
        [
            [1], [1, 2, 5], [1, 1.5, 2, 3, 5, 7], [1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9],
            Enumerable.Range(20, 80).Select(i => i / 10.0).Where(m => m < 10).Prepend(1.0).Distinct().ToArray(),
            Enumerable.Range(100, 900).Select(i => i / 100.0).ToArray(),
        ];
        double pad = Math.Pow(hi / lo, 0.04);
        // Clamped to finite positive doubles: a history perplexity near double's limit made b infinite (and the tick
        // count negative) instead of a plot.
        double a = Math.Max(lo / pad, double.Epsilon), b = Math.Min(hi * pad, double.MaxValue);
        List<double> In(double[] set) =>
            Enumerable.Range((int)Math.Floor(Math.Log10(a)) - 1, (int)Math.Ceiling(Math.Log10(b)) - (int)Math.Floor(Math.Log10(a)) + 2)
                .SelectMany(k => set.Select(m => Math.Round(m * Math.Pow(10, k), 10))).Where(v => v >= a && v <= b).Distinct().Order().ToList();
        for (int i = 0; i < sets.Length; i++)
        {
            var major = In(sets[i]);
            if (major.Count >= 4 || i == sets.Length - 1)
            {
                int step = (major.Count + 11) / 12; // the finest set can give too many: keep every step-th
                var kept = major.Where((_, j) => j % step == 0).ToList();
                return (kept, i + 1 < sets.Length ? In(sets[i + 1]).Except(kept).ToList() : major.Except(kept).ToList());
            }
        }
        return ([], []);
    }

    public static void Write(string path, IReadOnlyList<EpochStats> stats, string title)
    {
        // Machines without fonts draw no text: register the shipped DejaVu Sans and use it everywhere.
        var font = Path.Combine(AppContext.BaseDirectory, "fonts", "DejaVuSans.ttf");
        if (!s_fontAdded && File.Exists(font))
        {
            ScottPlot.Fonts.AddFontFile(FontName, font);
            s_fontAdded = true;
        }
        var plt = new ScottPlot.Plot();
        if (s_fontAdded) plt.Font.Set(FontName);
        var xs = stats.Select(s => s.EpochsDone()).ToArray();
        var train = plt.Add.Scatter(xs, stats.Select(s => Math.Log10(s.Perplexity)).ToArray());
        train.LegendText = "train";
        train.MarkerSize = 0;
        train.LineWidth = 2;
        var val = stats.Where(s => s.ValPerplexity is double).ToArray();
        if (val.Length > 0)
        {
            var v = plt.Add.Scatter(val.Select(s => s.EpochsDone()).ToArray(), val.Select(s => Math.Log10(s.ValPerplexity!.Value)).ToArray());
            v.LegendText = "validation";
            v.MarkerSize = 6;
            v.LineWidth = 2;
        }
        // Log scale: log10 values plotted, ticks at round perplexities (1, 2, 5, 10, … or denser within a decade).
        var all = stats.Select(s => s.Perplexity).Concat(val.Select(s => s.ValPerplexity!.Value)).ToArray();
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        var (major, minor) = LogTicks(all.Min(), all.Max());
        foreach (var v in major) ticks.AddMajor(Math.Log10(v), v.ToString("G4", CultureInfo.InvariantCulture));
        foreach (var v in minor) ticks.AddMinor(Math.Log10(v));
        plt.Axes.Left.TickGenerator = ticks;
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plt.Axes.Left.Label.Text = "perplexity (log scale)";
        plt.Axes.Bottom.Label.Text = "epoch";
        plt.Axes.Title.Label.Text = title;
        plt.ShowLegend(ScottPlot.Alignment.UpperRight);
        var full = Path.GetFullPath(path);
        var ext = Path.GetExtension(full).ToLowerInvariant();
        var tmp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileNameWithoutExtension(full)}.{Environment.ProcessId}.tmp{ext}");
        try
        {
            if (ext == ".svg") plt.SaveSvg(tmp, 900, 560); else plt.SavePng(tmp, 900, 560);
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw new CharRnnException($"Cannot write the plot {path}: {e.Message}", e);
        }
    }
}

/// <summary>
/// Signs of life during training, on stderr. On a terminal: one live line (epoch, bar, perplexity, tokens/s, ETA),
/// cleared before each of the book's lines, which go to stdout unchanged. Redirected: a plain heartbeat line at most
/// every <c>heartbeat</c> (default a minute; <c>CHARRNN_HEARTBEAT_SECONDS</c>), so a long first epoch on a big corpus
/// under a job scheduler shows it is running.
/// </summary>
internal sealed class Progress(TextWriter err, int firstEpoch, int lastEpoch, bool terminal, TimeSpan heartbeat)
{
    readonly System.Diagnostics.Stopwatch _sw = System.Diagnostics.Stopwatch.StartNew();
    TimeSpan _lastShown = TimeSpan.Zero;
    bool _shown;
    double _lastPerplexity = double.NaN;

    /// <remarks>Not under an MPI launcher: Open MPI's mpirun gives each rank a pseudo-terminal whose output it forwards
    /// (to a log, often), where a redrawn line would be noise.</remarks>
    public static bool TerminalAttached => !Console.IsErrorRedirected && Rnn.Distributed.Launch.LaunchedRanks() <= 1;

    /// <summary>The heartbeat interval: CHARRNN_HEARTBEAT_SECONDS when set (0 = after every minibatch), else 60 s.</summary>
    public static TimeSpan HeartbeatFromEnvironment() =>
        double.TryParse(Environment.GetEnvironmentVariable("CHARRNN_HEARTBEAT_SECONDS"), NumberStyles.Float, CultureInfo.InvariantCulture, out var s) && s >= 0
            ? TimeSpan.FromSeconds(s) : TimeSpan.FromMinutes(1);

    public void Update(EpochStats s)
    {
        _lastPerplexity = s.Perplexity;
        if (terminal) Show(s.Epoch, 1, 1, s.TokensPerSecond);
    }

    /// <summary>After each minibatch: the live line on a terminal (at most 5 times a second), else the heartbeat.</summary>
    public void Minibatch(int epoch, int done, int count, long tokensPerMinibatch)
    {
        var now = _sw.Elapsed;
        if (now - _lastShown < (terminal ? TimeSpan.FromMilliseconds(200) : heartbeat)) return;
        double minibatches = (double)(epoch - firstEpoch) * count + done;
        double rate = minibatches * tokensPerMinibatch / Math.Max(now.TotalSeconds, 1e-9);
        if (terminal) Show(epoch, done, count, rate);
        else
        {
            err.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"charrnn: epoch {epoch}/{lastEpoch}, minibatch {done}/{count} ({100.0 * done / count:F0}%), {rate / 1000:F1}k tokens/s, {Eta(epoch, done, count)}"));
            err.Flush();
        }
        _lastShown = now;
    }

    string Eta(int epoch, int done, int count)
    {
        double total = (double)(lastEpoch - firstEpoch + 1) * count, finished = (double)(epoch - firstEpoch) * count + done;
        var eta = TimeSpan.FromSeconds(_sw.Elapsed.TotalSeconds / Math.Max(finished, 1) * (total - finished));
        return $"ETA {(int)eta.TotalHours}:{eta:mm\\:ss}";
    }

    void Show(int epoch, int done, int count, double tokensPerSecond)
    {
        int epochs = lastEpoch - firstEpoch + 1;
        double frac = ((epoch - firstEpoch) + (double)done / count) / epochs;
        int width = 24, filled = (int)(frac * width);
        var ppl = double.IsNaN(_lastPerplexity) ? "" : string.Create(CultureInfo.InvariantCulture, $"  ppl {_lastPerplexity:F3}");
        var line = string.Create(CultureInfo.InvariantCulture,
            $"\r epoch {epoch}/{lastEpoch} [{new string('#', filled)}{new string('.', width - filled)}] {frac * 100,5:F1}%{ppl}  {tokensPerSecond / 1000:F1}k tok/s  {Eta(epoch, done, count)} ");
        err.Write(line);
        err.Flush();
        _shown = true;
    }

    public void Clear()
    {
        if (!_shown) return;
        err.Write("\r" + new string(' ', 100) + "\r");
        err.Flush();
        _shown = false;
    }
}
