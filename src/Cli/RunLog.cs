using System.Diagnostics;
using System.Globalization;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Training;

namespace CharRnn.Cli;

/// <summary>
/// What a training run tells and keeps as it goes, apart from the loop that drives it (<see cref="TrainCommand"/>):
/// the report lines on stdout (the book's exact lines for its presets; bits per character, tokens/s and elapsed time
/// otherwise), the validation lines, the live progress on stderr, and the history points that the metrics file,
/// TensorBoard, the plot and the checkpoints keep — one point per epoch, and per report with --print-every Nit.
/// </summary>
internal sealed class RunLog
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    readonly TextWriter _out;
    readonly TrainOptions _o;
    readonly Trainer _trainer;
    readonly MetricsWriter? _metrics;
    readonly TensorBoardWriter? _board;
    readonly string? _plot;
    readonly bool _reportPoints;
    readonly string _plotTitle;
    readonly Stopwatch _total = Stopwatch.StartNew(), _sinceReport = Stopwatch.StartNew();
    long _reportedAt;
    string? _pendingVal;

    /// <param name="history">The run's points before this process (a resume), kept first.</param>
    public RunLog(TextWriter stdout, TextWriter stderr, TrainOptions o, Trainer trainer, IEnumerable<EpochStats> history, string device,
        string? metrics, TensorBoardWriter? board, bool backfillBoard, string? plot, bool reportPoints)
    {
        (_out, _o, _trainer, _board, _plot, _reportPoints) = (stdout, o, trainer, board, plot, reportPoints);
        Stats = history.ToList();
        if (backfillBoard) foreach (var s in Stats) board!.Add(s);
        _metrics = metrics != null ? new MetricsWriter(metrics, device, Stats) : null;
        Progress = new Progress(stderr, trainer.CompletedEpochs + 1, o.Epochs, Progress.TerminalAttached, Progress.HeartbeatFromEnvironment());
        _reportedAt = trainer.TotalMinibatches;
        _plotTitle = $"char-RNN: {o.Model.ToString().ToLowerInvariant()} {o.Cell.ToString().ToUpperInvariant()}" +
                     $"{(o.Layers > 1 ? $" ×{o.Layers}" : "")}, H {o.Hidden}, {o.Sampling.ToString().ToLowerInvariant()} sampling, {device}";
    }

    /// <summary>The run's history: what checkpoints store and the plot draws.</summary>
    public List<EpochStats> Stats { get; }

    public Progress Progress { get; }

    public TimeSpan Elapsed => _total.Elapsed;

    /// <summary>Whether something keeps per-epoch numbers (each costs a device sync on a GPU).</summary>
    public bool WantsEpochs(bool checkpoints) =>
        _metrics != null || _plot != null || _board != null || checkpoints || Progress.TerminalAttached || _o.ValFraction != null;

    /// <summary>Tokens/s since the last report (wall time: predictions and evaluations included).</summary>
    double TokensPerSecond()
    {
        double tps = (_trainer.TotalMinibatches - _reportedAt) * (double)_o.Batch * _o.Steps / Math.Max(_sinceReport.Elapsed.TotalSeconds, 1e-9);
        _reportedAt = _trainer.TotalMinibatches;
        _sinceReport.Restart();
        return tps;
    }

    static string ValLine(string where, double vp) => string.Create(Inv, $"{where}, validation perplexity {vp:F6} ({EpochStats.Bits(vp):F3} bits/char)");

    public void Report(EpochReport r)
    {
        Progress.Clear();
        var where = r.Minibatch is int m ? $"epoch {r.Epoch}, minibatch {m}/{r.EpochSize}" : $"epoch {r.Epoch}";
        double tps = TokensPerSecond();
        _out.WriteLine(_o.BookLines
            ? string.Create(Inv, $"{where}, perplexity {r.Perplexity:F6}, time {r.Seconds:F2} sec")
            : string.Create(Inv, $"{where}, perplexity {r.Perplexity:F6} ({EpochStats.Bits(r.Perplexity):F3} bits/char), time {r.Seconds:F2} sec, {tps:F0} tokens/s, elapsed {_total.Elapsed:h\\:mm\\:ss}"));
        _pendingVal = null;
        if (r.ValPerplexity is double vp) _out.WriteLine(ValLine(where, vp));
        if (_reportPoints && r.Minibatch is int mb) // a point per report (the epoch's end adds its own)
            Keep(new EpochStats(r.Epoch, r.Perplexity, r.ValPerplexity, r.Seconds, tps)
                { LearningRate = _trainer.Optimizer.LearningRate, Minibatch = mb, EpochSize = r.EpochSize, Step = _trainer.TotalMinibatches });
        foreach (var p in r.Predictions) _out.WriteLine($" - {p.Replace("\n", "⏎")}"); // a kept line break, shown on the report's one line
        _out.Flush();
    }

    public void Epoch(EpochStats s)
    {
        s = s with { Step = _trainer.TotalMinibatches };
        if (s.ValPerplexity is double v) _pendingVal = ValLine($"epoch {s.Epoch}", v); // printed by the report if one follows
        Keep(s);
        Progress.Update(s);
    }

    void Keep(EpochStats s)
    {
        Stats.Add(s);
        _metrics?.Add(s);
        _board?.Add(s);
    }

    public void Minibatch(int epoch, int done, int count)
    {
        FlushVal();
        Progress.Minibatch(epoch, done, count, (long)_o.Batch * _o.Steps);
    }

    /// <summary>An evaluation no report printed: its line on its own, before whatever comes next.</summary>
    public void FlushVal()
    {
        if (_pendingVal == null) return;
        Progress.Clear();
        _out.WriteLine(_pendingVal);
        _out.Flush();
        _pendingVal = null;
    }

    public void Plot()
    {
        if (_plot != null && Stats.Count > 0) PlotWriter.Write(_plot, Stats, _plotTitle);
    }

    public void Total() => _out.WriteLine(string.Create(Inv, $"total training time {_total.Elapsed.TotalSeconds:F2} sec"));
}
