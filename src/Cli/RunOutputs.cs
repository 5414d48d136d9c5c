using System.Globalization;
using System.Text;
using System.Text.Json;
using CharRnn.Rnn;
using CharRnn.Rnn.Training;

namespace CharRnn.Cli;

/// <summary>
/// <c>--metrics FILE.jsonl</c>: one JSON object per epoch. The whole file is rewritten atomically each epoch (temp file,
/// rename), so it is always complete: a crash leaves the epochs up to the last finished one.
/// </summary>
internal sealed class MetricsWriter(string path, string device)
{
    readonly StringBuilder _lines = new();

    public void Add(EpochStats s)
    {
        var o = new Dictionary<string, object?>
        {
            ["epoch"] = s.Epoch, ["perplexity"] = s.Perplexity, ["val_perplexity"] = s.ValPerplexity,
            ["seconds"] = s.Seconds, ["tokens_per_s"] = s.TokensPerSecond, ["device"] = device,
        };
        _lines.Append(JsonSerializer.Serialize(o)).Append('\n');
        AtomicFile.WriteAllText(path, _lines.ToString());
    }
}

/// <summary><c>--plot FILE.png|.svg</c>: perplexity per epoch on a log scale, train and validation, with ScottPlot.</summary>
internal static class PlotWriter
{
    const string FontName = "DejaVu Sans";
    static bool s_fontAdded;

    public static void CheckPath(string path)
    {
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is not (".png" or ".svg"))
            throw new CharRnnException($"--plot must name a .png or .svg file (got '{path}').");
        AtomicFile.CheckWritable(path, "--plot");
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
        var xs = stats.Select(s => (double)s.Epoch).ToArray();
        var train = plt.Add.Scatter(xs, stats.Select(s => Math.Log10(s.Perplexity)).ToArray());
        train.LegendText = "train";
        train.MarkerSize = 0;
        train.LineWidth = 2;
        var val = stats.Where(s => s.ValPerplexity is double).ToArray();
        if (val.Length > 0)
        {
            var v = plt.Add.Scatter(val.Select(s => (double)s.Epoch).ToArray(), val.Select(s => Math.Log10(s.ValPerplexity!.Value)).ToArray());
            v.LegendText = "validation";
            v.MarkerSize = 6;
            v.LineWidth = 2;
        }
        // Log scale: log10 values plotted, labelled with 10^y. Over a decade or more, ticks at the powers of ten with
        // log minor ticks between; within less than a decade, ordinary ticks (still labelled as perplexities).
        var logs = stats.Select(s => Math.Log10(s.Perplexity)).Concat(val.Select(s => Math.Log10(s.ValPerplexity!.Value))).ToArray();
        bool decades = logs.Length > 0 && logs.Max() - logs.Min() >= 1;
        plt.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
        {
            MinorTickGenerator = decades ? new ScottPlot.TickGenerators.LogMinorTickGenerator() : new ScottPlot.TickGenerators.EvenlySpacedMinorTickGenerator(2),
            IntegerTicksOnly = decades,
            LabelFormatter = y => Math.Pow(10, y).ToString("G4", CultureInfo.InvariantCulture),
        };
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
/// A one-line live progress display on stderr when it is a terminal (epoch, bar, perplexity, tokens/s, ETA);
/// nothing when stderr is redirected. Cleared before each of the book's lines, which go to stdout unchanged.
/// </summary>
internal sealed class Progress(TextWriter err, int firstEpoch, int lastEpoch, bool enabled)
{
    readonly System.Diagnostics.Stopwatch _sw = System.Diagnostics.Stopwatch.StartNew();
    bool _shown;

    public static bool TerminalAttached => !Console.IsErrorRedirected;

    public void Update(EpochStats s)
    {
        if (!enabled) return;
        int done = s.Epoch - firstEpoch + 1, total = lastEpoch - firstEpoch + 1;
        double frac = (double)done / total;
        var eta = TimeSpan.FromSeconds(_sw.Elapsed.TotalSeconds / done * (total - done));
        int width = 24, filled = (int)(frac * width);
        var line = string.Create(CultureInfo.InvariantCulture,
            $"\r epoch {s.Epoch}/{lastEpoch} [{new string('#', filled)}{new string('.', width - filled)}] {frac * 100,5:F1}%  ppl {s.Perplexity:F3}  {s.TokensPerSecond / 1000:F1}k tok/s  ETA {eta:mm\\:ss} ");
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
