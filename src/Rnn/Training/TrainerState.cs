using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>
/// Everything a run needs to continue bit for bit from an epoch boundary: parameters, the optimizer's state, the data
/// generator's state and the state carried into the next minibatch (consecutive sampling). <see cref="Trainer"/> takes
/// and gives it; <c>Checkpoints.Checkpoint</c> stores it (with the options and the corpus it belongs to).
/// </summary>
public sealed record TrainerState
{
    /// <summary>Epochs completed; training continues in the next one, after <see cref="Minibatch"/> minibatches.</summary>
    public required int Epoch { get; init; }
    /// <summary>Minibatches of the next epoch already trained (0 at an epoch boundary).</summary>
    public int Minibatch { get; init; }
    /// <summary>The loss summed over those minibatches and their row count, so the epoch's perplexity comes out whole.</summary>
    public double LossSum { get; init; }
    public long LossRows { get; init; }
    /// <summary>The data generator's state at the start of that epoch (which redraws its minibatches on a resume).</summary>
    public required ulong[] DataRng { get; init; }
    public required RnnParameters Parameters { get; init; }
    /// <summary>Adam's steps so far (0: SGD, or Adam before its first step); the moments when positive.</summary>
    public int AdamSteps { get; init; }
    public float[][]? AdamM { get; init; }
    public float[][]? AdamV { get; init; }
    /// <summary>Per layer, the final H (B × H) of the last minibatch (and C for the LSTM).</summary>
    public required float[][] H { get; init; }
    public float[][]? C { get; init; }
    /// <summary>How many data-parallel ranks trained it (the state rows are all ranks' rows, in rank order).</summary>
    public int Ranks { get; init; } = 1;
}

/// <summary>The loss went NaN or infinite: nothing after <see cref="Epoch"/>'s start is worth keeping.</summary>
public sealed class DivergedException(int epoch, string message) : CharRnnException(message)
{
    public int Epoch { get; } = epoch;
}
