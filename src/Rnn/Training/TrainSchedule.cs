using System.Globalization;

namespace CharRnn.Rnn.Training;

/// <summary>
/// How often something happens during a run: every N epochs ("3"), or every N minibatches ("500it", for corpora whose
/// single epoch is long). A minibatch interval counts the run's minibatches from its start (resumes included).
/// </summary>
public readonly record struct Interval(int Count, bool Minibatches)
{
    public static Interval Epochs(int n) => new(n, false);

    /// <summary>Parses "N" (epochs) or "Nit" (minibatches), N ≥ 1; a clear error naming <paramref name="flag"/> otherwise.</summary>
    public static Interval Parse(string text, string flag)
    {
        var t = text.Trim();
        bool it = t.EndsWith("it", StringComparison.OrdinalIgnoreCase);
        if (it) t = t[..^2];
        if (int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= 1) return new Interval(n, it);
        throw new CharRnnException($"{flag} must be a number of epochs (e.g. 5) or of minibatches (e.g. 500it), at least 1 (got '{text}').");
    }

    /// <summary>Whether the interval falls after the given minibatch (<paramref name="epochEnd"/>: it was its epoch's last).</summary>
    public bool Due(int epoch, long totalMinibatches, bool epochEnd) =>
        Minibatches ? totalMinibatches % Count == 0 : epochEnd && epoch % Count == 0;

    public override string ToString() => Minibatches ? $"{Count}it" : Count.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// When a run reports (perplexity and predictions), evaluates on its validation split, and saves; and when it stops
/// early. None of it changes what is trained, so a resumed run may choose it afresh.
/// </summary>
public sealed record TrainSchedule
{
    /// <summary>The book's report line and predictions (default: every <see cref="TrainOptions.PredPeriod"/> epochs); the
    /// final epoch always reports too.</summary>
    public required Interval Print { get; init; }

    /// <summary>Validation perplexity (with <see cref="TrainOptions.ValFraction"/>): default every epoch.</summary>
    public Interval Eval { get; init; } = Interval.Epochs(1);

    /// <summary>Checkpoints (the caller saves on <see cref="TrainHooks.Save"/>); null: none. The final epoch saves too.</summary>
    public Interval? Save { get; init; }

    /// <summary>Stop when the validation perplexity has not improved for this many evaluations (null: never).</summary>
    public int? Patience { get; init; }

    public static TrainSchedule Book(TrainOptions o) => new() { Print = Interval.Epochs(o.PredPeriod) };
}

/// <summary>What a run tells its caller as it goes. Every hook is optional.</summary>
public sealed class TrainHooks
{
    /// <summary>At each print interval and at the end: the book's line (perplexity so far in the epoch, predictions).</summary>
    public Action<EpochReport>? Report { get; init; }

    /// <summary>After every epoch (reads the loss every epoch: one device sync per epoch on a GPU).</summary>
    public Action<EpochStats>? Epoch { get; init; }

    /// <summary>At each save interval and at the end, once the loss so far has been read healthy: save a checkpoint now.</summary>
    public Action<SavePoint>? Save { get; init; }

    /// <summary>After every minibatch is issued: (epoch, minibatches done in it, of how many).</summary>
    public Action<int, int, int>? Minibatch { get; init; }
}

/// <summary>Where a save falls: after <see cref="Minibatch"/> minibatches of epoch <see cref="Epoch"/> (its last one at
/// an epoch boundary), with the latest validation perplexity when there is one.</summary>
public sealed record SavePoint(int Epoch, int Minibatch, int EpochSize, double? ValPerplexity)
{
    public bool AtEpochEnd => Minibatch == EpochSize;
}

/// <summary>How a run ended.</summary>
public enum TrainOutcome { Completed, EarlyStopped }
