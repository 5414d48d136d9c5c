using System.Globalization;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>
/// What the command line asked for, before a preset or a checkpoint fills in the rest: each property is null where
/// its flag was not given. <see cref="RunRules"/> turns it into a run's <see cref="TrainOptions"/>.
/// </summary>
public sealed record TrainOverrides
{
    public string? Preset { get; init; }
    public CellKind? Cell { get; init; }
    public int? Layers { get; init; }
    public int? Steps { get; init; }
    public int? Batch { get; init; }
    public int? Hidden { get; init; }
    public float? LearningRate { get; init; }
    public float? LrDecay { get; init; }
    public int? LrDecayAfter { get; init; }
    public int? LrDecayEvery { get; init; }
    public double? PredTemperature { get; init; }
    public float? Dropout { get; init; }
    /// <summary>Set when --clip was given; its Theta is null for 'none'.</summary>
    public ClipSetting? Clip { get; init; }
    public SamplingKind? Sampling { get; init; }
    public OptimizerKind? Optimizer { get; init; }
    public ulong? Seed { get; init; }
    public InputMode? Input { get; init; }
    public Activation? Activation { get; init; }
    public double? ValFraction { get; init; }
    public int? Epochs { get; init; }
    public int? PredPeriod { get; init; }
    public int? PredLen { get; init; }
    public IReadOnlyList<string>? Prefixes { get; init; }
}

/// <summary>A given --clip: a threshold, or null for 'none'.</summary>
public readonly record struct ClipSetting(float? Theta);

/// <summary>
/// The one home of a run's rules: how a fresh run's options come from a preset and the flags, and what a resumed run
/// may change (how long it runs and what it prints) and what it may not (everything that fixes the model, the
/// optimizer and the data order — re-stating a value unchanged is fine, a real change is refused, each one named).
/// </summary>
public static partial class RunRules
{
    /// <summary>A fresh run: the preset (default scratch-random), then every flag given.</summary>
    public static TrainOptions Fresh(TrainOverrides given) => Apply(TrainOptions.Preset(given.Preset ?? "scratch-random"), given);

    /// <summary>
    /// A new run that starts from a trained model's weights (fine-tuning): the model's shape (kind, cell, layers,
    /// hidden size, activation) is the checkpoint's — a flag that contradicts it is refused, naming it — and everything
    /// else starts from the checkpoint's run and takes every flag given (a preset's optimizer and sampling included).
    /// </summary>
    public static TrainOptions FineTune(TrainOptions saved, TrainOverrides given)
    {
        var preset = given.Preset != null ? TrainOptions.Preset(given.Preset) : null;
        var shape = new (string Flag, bool Given, object Saved, object? Asked)[]
        {
            ("--preset", preset != null && preset.Model != saved.Model, saved.Model, preset?.Model),
            ("--cell", given.Cell != null, saved.Cell, given.Cell),
            ("--layers", given.Layers != null, saved.Layers, given.Layers),
            ("--hidden", given.Hidden != null, saved.Hidden, given.Hidden),
            ("--activation", given.Activation != null, saved.Activation, given.Activation),
        }.Where(f => f.Given && !Equals(f.Saved, f.Asked)).ToList();
        if (shape.Count > 0)
            throw new CharRnnException(
                $"{string.Join(", ", shape.Select(f => $"{f.Flag} (the model has {Show(f.Saved)}, given {Show(f.Asked)})"))}: --init-from keeps the model's shape. " +
                "Drop the flag, or train a new model without --init-from.");
        var start = preset == null ? saved : preset with
        {
            Model = saved.Model, Cell = saved.Cell, Layers = saved.Layers, Hidden = saved.Hidden, Activation = saved.Activation,
        };
        return Apply(start, given);
    }

    static TrainOptions Apply(TrainOptions o, TrainOverrides given)
    {
        o = o with
        {
            Cell = given.Cell ?? o.Cell,
            Layers = given.Layers ?? o.Layers,
            Steps = given.Steps ?? o.Steps,
            Batch = given.Batch ?? o.Batch,
            Hidden = given.Hidden ?? o.Hidden,
            LearningRate = given.LearningRate ?? o.LearningRate,
            LrDecay = given.LrDecay ?? o.LrDecay,
            LrDecayAfter = given.LrDecayAfter ?? o.LrDecayAfter,
            LrDecayEvery = given.LrDecayEvery ?? o.LrDecayEvery,
            Clip = given.Clip is { } c ? c.Theta : o.Clip,
            Sampling = given.Sampling ?? o.Sampling,
            Optimizer = given.Optimizer ?? o.Optimizer,
            Dropout = given.Dropout ?? o.Dropout,
            Seed = given.Seed ?? o.Seed,
            Input = given.Input ?? o.Input,
            Activation = given.Activation ?? o.Activation,
            ValFraction = given.ValFraction ?? o.ValFraction,
        };
        return Presentation(o, given);
    }

    /// <summary>What may differ between a run and its resumption: length, reporting, and the input path (whose two
    /// ways compute exactly the same numbers).</summary>
    static TrainOptions Presentation(TrainOptions o, TrainOverrides given) => o with
    {
        Epochs = given.Epochs ?? o.Epochs,
        PredPeriod = given.PredPeriod ?? o.PredPeriod,
        PredLen = given.PredLen ?? o.PredLen,
        PredTemperature = given.PredTemperature ?? o.PredTemperature,
        Prefixes = given.Prefixes is { Count: > 0 } p ? p : o.Prefixes,
        Input = given.Input ?? o.Input,
    };

    /// <summary>The fields a resumed run keeps, each with its flag and how the given value reads.</summary>
    static IEnumerable<(string Flag, bool Given, object? Saved, object? Asked)> Fixed(TrainOptions s, TrainOverrides g)
    {
        var preset = g.Preset != null ? TrainOptions.Preset(g.Preset) : null;
        // A preset stands for its model kind, cell, sampling and optimizer (its other values are defaults, which flags override).
        yield return ("--preset", preset != null, (s.Model, s.Cell, s.Sampling, s.Optimizer),
            preset == null ? null : (preset.Model, g.Cell ?? preset.Cell, g.Sampling ?? preset.Sampling, g.Optimizer ?? preset.Optimizer));
        yield return ("--cell", g.Cell != null, s.Cell, g.Cell);
        yield return ("--layers", g.Layers != null, s.Layers, g.Layers);
        yield return ("--steps", g.Steps != null, s.Steps, g.Steps);
        yield return ("--batch", g.Batch != null, s.Batch, g.Batch);
        yield return ("--hidden", g.Hidden != null, s.Hidden, g.Hidden);
        yield return ("--lr", g.LearningRate != null, s.LearningRate, g.LearningRate);
        yield return ("--lr-decay", g.LrDecay != null, s.LrDecay, g.LrDecay);
        yield return ("--lr-decay-after", g.LrDecayAfter != null, s.LrDecayAfter, g.LrDecayAfter);
        yield return ("--lr-decay-every", g.LrDecayEvery != null, s.LrDecayEvery, g.LrDecayEvery);
        yield return ("--dropout", g.Dropout != null, s.Dropout, g.Dropout);
        yield return ("--clip", g.Clip != null, s.Clip, g.Clip?.Theta);
        yield return ("--sampling", g.Sampling != null, s.Sampling, g.Sampling);
        yield return ("--optimizer", g.Optimizer != null, s.Optimizer, g.Optimizer);
        yield return ("--seed", g.Seed != null, s.Seed, g.Seed);
        yield return ("--activation", g.Activation != null, s.Activation, g.Activation);
        yield return ("--val-fraction", g.ValFraction != null, s.ValFraction, g.ValFraction);
    }

    /// <summary>
    /// A resumed run: the saved options with the flags that may change applied. Every other flag given must repeat the
    /// saved value; the ones that do not are refused together, each named with both values.
    /// </summary>
    public static TrainOptions Resume(TrainOptions saved, TrainOverrides given)
    {
        var changed = Fixed(saved, given).Where(f => f.Given && !Equals(f.Saved, f.Asked)).ToList();
        if (changed.Count > 0)
        {
            var what = string.Join(", ", changed.Select(f => f.Flag == "--preset"
                ? $"--preset {given.Preset} (the checkpoint's run is {Describe(saved)})"
                : $"{f.Flag} (checkpoint {Show(f.Saved)}, given {Show(f.Asked)})"));
            throw new CharRnnException(
                $"{what}: {(changed.Count == 1 ? "this cannot" : "these cannot")} change when resuming, because the checkpoint fixes the model, " +
                $"the optimizer and the data order. Drop {(changed.Count == 1 ? "it" : "them")} to continue the run, or start a new run.");
        }
        return Presentation(saved, given);
    }

    /// <summary>--batch is the global batch: it must split evenly over the ranks. Found from the command line alone,
    /// so every rank finds it alike (no MPI_Abort needed).</summary>
    public static void CheckBatchSplits(int batch, int ranks)
    {
        if (batch % ranks != 0)
            throw new AlikeOnEveryRankException($"--batch {batch} does not split evenly over {ranks} ranks (--batch is the global batch). Use a multiple of {ranks}.");
    }

    static string Describe(TrainOptions o) =>
        $"{o.Model.ToString().ToLowerInvariant()} {o.Cell.ToString().ToUpperInvariant()}, {o.Sampling.ToString().ToLowerInvariant()} sampling, {o.Optimizer.ToString().ToLowerInvariant()}";

    static string Show(object? v) => v switch
    {
        null => "none",
        float f => f.ToString(CultureInfo.InvariantCulture),
        double d => d.ToString(CultureInfo.InvariantCulture),
        Enum e => e.ToString().ToLowerInvariant(),
        _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
    };
}
