using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>Every hyperparameter of a run. The presets reproduce the book's runs (d2l 6.4 and 6.5).</summary>
public sealed record TrainOptions
{
    public ModelKind Model { get; init; } = ModelKind.Scratch;
    public CellKind Cell { get; init; } = CellKind.Rnn;
    public int Layers { get; init; } = 1;
    public Activation Activation { get; init; } = Activation.Tanh;
    public int Epochs { get; init; } = 250;
    public int Steps { get; init; } = 35;
    public int Batch { get; init; } = 32;
    public int Hidden { get; init; } = 256;
    public float LearningRate { get; init; } = 100f;
    /// <summary>Global-norm clipping threshold θ; null = no clipping.</summary>
    public float? Clip { get; init; } = 0.01f;
    public SamplingKind Sampling { get; init; } = SamplingKind.Random;
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Sgd;
    public int PredPeriod { get; init; } = 50;
    public int PredLen { get; init; } = 50;
    public const int MaxPredLen = 1_000_000;
    public const int MaxLayers = 1_000;
    public IReadOnlyList<string> Prefixes { get; init; } = ["分开", "不分开"];
    public ulong Seed { get; init; } = 0;
    /// <summary>Dropout between stacked layers (nn.RNN's <c>dropout</c>): the probability of zeroing each input of layers
    /// above the first during training; 0 = none. Off for validation and generation.</summary>
    public float Dropout { get; init; }
    /// <summary>char-rnn's schedule: after epoch <see cref="LrDecayAfter"/>, the learning rate is multiplied by this each
    /// epoch (1 = constant).</summary>
    public float LrDecay { get; init; } = 1f;
    public int LrDecayAfter { get; init; }
    /// <summary>torch-rnn's schedule: the decay applies once every this many epochs (1: every epoch, char-rnn's).</summary>
    public int LrDecayEvery { get; init; } = 1;
    /// <summary>The report's predictions: 0 is the book's greedy choice; above 0, characters drawn from
    /// softmax(logits / temperature) with a generator seeded from the run's seed and position (reproducible).</summary>
    public double PredTemperature { get; init; }
    /// <summary>The preset the run started from (null: scratch-random, or a checkpoint written before presets were kept).</summary>
    public string? PresetName { get; init; }
    /// <summary>Hold out this fraction of the corpus's tail for validation (null: none).</summary>
    public double? ValFraction { get; init; }
    public InputMode? Input { get; init; }

    /// <summary>The learning rate of epoch <paramref name="epoch"/> (1-based): the decay applies at the end of epoch
    /// <see cref="LrDecayAfter"/> and then every <see cref="LrDecayEvery"/> epochs (char-rnn: every epoch; torch-rnn:
    /// ×0.5 every 5).</summary>
    public float LearningRateAt(int epoch) =>
        LrDecay == 1f || epoch <= LrDecayAfter ? LearningRate
            : LearningRate * MathF.Pow(LrDecay, (epoch - 1 - LrDecayAfter) / LrDecayEvery + 1);

    /// <summary>The book's presets print the book's exact report lines; char-rnn's adds throughput and elapsed time.</summary>
    public bool BookLines => PresetName != CharRnnPreset;

    /// <summary>What --corpus trains by default: char-rnn/torch-rnn's recipe for one's own text.</summary>
    public const string CharRnnPreset = "char-rnn";

    /// <summary>The model these options train on a vocabulary of <paramref name="vocab"/> characters.</summary>
    public ModelSpec Spec(int vocab) => new(Model, vocab, Hidden, Activation, Cell, Layers);

    public static readonly string[] PresetNames =
        ["scratch-random", "scratch-consecutive", "concise", "gru-scratch", "lstm-scratch", "gru-concise", "lstm-concise", CharRnnPreset];

    /// <summary>
    /// The book's runs. concise: Adam lr 1e-3, consecutive sampling, and — like the book — no clipping.
    /// gru-/lstm-scratch (6.7/6.8): consecutive sampling, 160 epochs, SGD lr 100, clip 0.01, report every 40;
    /// gru-/lstm-concise: the same with nn.GRU/nn.LSTM, Adam lr 1e-2 and (as the book) no clipping.
    /// </summary>
    public static TrainOptions Preset(string name) => (name switch
    {
        "scratch-random" => new TrainOptions(),
        "scratch-consecutive" => new TrainOptions { Sampling = SamplingKind.Consecutive },
        "concise" => new TrainOptions
        {
            Model = ModelKind.Concise, Sampling = SamplingKind.Consecutive, Optimizer = OptimizerKind.Adam,
            LearningRate = 1e-3f, Clip = null,
        },
        "gru-scratch" => Gated(CellKind.Gru, ModelKind.Scratch),
        "lstm-scratch" => Gated(CellKind.Lstm, ModelKind.Scratch),
        "gru-concise" => Gated(CellKind.Gru, ModelKind.Concise),
        "lstm-concise" => Gated(CellKind.Lstm, ModelKind.Concise),
        // char-rnn / torch-rnn on one's own text: a 2-layer LSTM of 128, batches of 50 × 50, Adam 2e-3 (torch-rnn's),
        // gradient norm clipped at 5, 5 % held out (char-rnn's val_frac), ×0.5 every 5 epochs (torch-rnn's
        // lr_decay_every/lr_decay_factor), 50 epochs; reports every epoch with 200 sampled characters at temperature 1.
        CharRnnPreset => new TrainOptions
        {
            Model = ModelKind.Concise, Cell = CellKind.Lstm, Layers = 2, Hidden = 128, Batch = 50, Steps = 50,
            Optimizer = OptimizerKind.Adam, LearningRate = 2e-3f, Clip = 5f, Sampling = SamplingKind.Consecutive,
            ValFraction = 0.05, LrDecay = 0.5f, LrDecayAfter = 5, LrDecayEvery = 5, Epochs = 50, PredPeriod = 1,
            PredLen = 200, PredTemperature = 1,
        },
        _ => throw new CharRnnException($"Unknown preset '{name}'. Choose one of: {string.Join(", ", PresetNames)}."),
    }) with { PresetName = name == "scratch-random" ? null : name };

    static TrainOptions Gated(CellKind cell, ModelKind kind) => new()
    {
        Model = kind, Cell = cell, Sampling = SamplingKind.Consecutive, Epochs = 160, PredPeriod = 40,
        Optimizer = kind == ModelKind.Scratch ? OptimizerKind.Sgd : OptimizerKind.Adam,
        LearningRate = kind == ModelKind.Scratch ? 100f : 1e-2f,
        Clip = kind == ModelKind.Scratch ? 0.01f : null,
    };

    /// <summary>Throws one clear message for the first bad value.</summary>
    public void Validate()
    {
        static void Positive(string flag, int v)
        {
            if (v < 1) throw new CharRnnException($"{flag} must be a positive whole number (got {v}).");
        }
        Positive("--epochs", Epochs);
        Positive("--steps", Steps);
        Positive("--batch", Batch);
        Positive("--hidden", Hidden);
        Positive("--layers", Layers);
        // Every layer is a few ops per step: 100 000 layers ran minutes before their first report. char-rnn stacks 2 or 3.
        if (Layers > MaxLayers) throw new CharRnnException($"--layers must be at most {MaxLayers:N0} (got {Layers}).");
        if (Activation == Activation.Relu && Cell != CellKind.Rnn)
            throw new CharRnnException("--activation relu applies to the plain RNN cell only (GRU and LSTM use their own sigmoid/tanh gates).");
        Positive("--pred-period", PredPeriod);
        if (PredLen < 0) throw new CharRnnException($"--pred-len must be zero or more (got {PredLen}).");
        // The report's predictions are kept on the backend whole (prefix + length token ids): bounded, as a report line is.
        if (PredLen > MaxPredLen)
            throw new CharRnnException($"--pred-len must be at most {MaxPredLen:N0} (got {PredLen:N0}): it is the length of each report's sample; charrnn generate --length writes long texts.");
        if (!float.IsFinite(LearningRate) || LearningRate <= 0)
            throw new CharRnnException($"--lr must be a positive finite number (got {LearningRate}).");
        if (Clip is float c && (float.IsNaN(c) || c <= 0))
            throw new CharRnnException($"--clip must be a positive number, or 'none' to turn clipping off (got {c}).");
        if (Prefixes.Any(p => p.Length == 0)) throw new CharRnnException("--prefix must not be empty.");
        if (!(Dropout >= 0 && Dropout < 1)) throw new CharRnnException($"--dropout must be at least 0 and below 1 (got {Dropout}).");
        if (Dropout > 0 && Layers < 2)
            throw new CharRnnException("--dropout applies between stacked layers (as nn.RNN's dropout): use it with --layers 2 or more.");
        if (!(LrDecay > 0 && LrDecay <= 1)) throw new CharRnnException($"--lr-decay must be above 0 and at most 1 (got {LrDecay}).");
        if (LrDecayEvery < 1) throw new CharRnnException($"--lr-decay-every must be a positive whole number (got {LrDecayEvery}).");
        if (!(PredTemperature >= 0 && double.IsFinite(PredTemperature)))
            throw new CharRnnException($"--pred-temperature must be 0 (greedy) or more (got {PredTemperature}).");
        if (LrDecayAfter < 0) throw new CharRnnException($"--lr-decay-after must be zero or more (got {LrDecayAfter}).");
        if (ValFraction is double f && !(f > 0 && f < 1))
            throw new CharRnnException($"--val-fraction must be between 0 and 1, exclusive (got {f}).");
    }
}

/// <summary>
/// What is printed at a report: the epoch (and the minibatch, when the report falls inside an epoch), the perplexity
/// of the epoch so far, the time since the epoch began, the predictions, and the latest validation perplexity.
/// </summary>
public sealed record EpochReport(int Epoch, double Perplexity, double Seconds, IReadOnlyList<string> Predictions, double? ValPerplexity = null)
{
    /// <summary>Minibatches done in <see cref="Epoch"/> when the report falls inside it; null at its end.</summary>
    public int? Minibatch { get; init; }
    public int EpochSize { get; init; }
}

/// <summary>One epoch's numbers, for metrics files, progress displays, plots and a run's history in its checkpoints.</summary>
public sealed record EpochStats(int Epoch, double Perplexity, double? ValPerplexity, double Seconds, double TokensPerSecond)
{
    /// <summary>The learning rate the epoch ran at (after decay).</summary>
    public double? LearningRate { get; init; }
    /// <summary>The global gradient norm before clipping, of the epoch's last minibatch.</summary>
    public double? GradNorm { get; init; }
    /// <summary>A point inside the epoch (a --print-every Nit report): minibatches done in it, of how many; null at its end.</summary>
    public int? Minibatch { get; init; }
    public int? EpochSize { get; init; }
    /// <summary>The run's minibatches up to this point (resumes included).</summary>
    public long? Step { get; init; }
    /// <summary>Milliseconds a step waited for the gradient average after its backward pass, the epoch's mean (#25);
    /// null with one rank, and where no step of the epoch was issued from the host (a replayed graph).</summary>
    public double? CommWaitMs { get; init; }

    /// <summary>Where the point falls in epochs (2.5: half-way through epoch 3).</summary>
    public double EpochsDone() => Minibatch is int m && EpochSize is int n and > 0 ? Epoch - 1 + (double)m / n : Epoch;

    /// <summary>Bits per character of a perplexity: log2 of it (the metric character-level papers report).</summary>
    public static double Bits(double perplexity) => Math.Log2(perplexity);
}
