using CharRnn.Rnn.Data;

namespace CharRnn.Rnn.Training;

/// <summary>The trainer's epoch: its minibatches built and uploaded once, then one training step each.</summary>
public sealed partial class Trainer
{
    /// <summary>Builds and uploads the current epoch's minibatches (from its starting generator state, so a resumed
    /// epoch gets the same ones) and clears the loss accumulator.</summary>
    internal void StartEpoch(int firstMinibatch)
    {
        if (firstMinibatch > 0) _dataRng.SetState(_epochRng); // a resumed epoch: the same draw as the first time
        _epochRng = _dataRng.State;
        var batches = _o.Sampling == SamplingKind.Random
            ? Samplers.Random(_train, _o.Batch, _o.Steps, _dataRng)
            : Samplers.Consecutive(_train, _o.Batch, _o.Steps);
        var (xs, ys, _) = Flatten(batches, EpochSize, _o.Batch * _o.Steps);
        (xs, ys) = (MyShare(xs), MyShare(ys));
        _epochX ??= _be.Indices(xs.Length);
        _epochY ??= _be.Indices(ys.Length);
        _be.Upload(_epochX, xs);
        _be.Upload(_epochY, ys);
        _be.ResetLoss();
    }

    /// <summary>One whole epoch with no events (benchmarks): its loss stays in the backend's accumulator.</summary>
    public void RunEpoch()
    {
        StartEpoch(0);
        for (int i = 0; i < EpochSize; i++) TrainMinibatch(i);
        CompletedEpochs++;
        _epochRng = _dataRng.State;
    }

    /// <summary>
    /// Minibatch <paramref name="i"/> of the current epoch (<see cref="StartEpoch"/>): the book's state rule (random
    /// sampling: zeros for every minibatch; consecutive: zeros for the epoch's first, then the previous minibatch's
    /// final state, detached), then one step. Dropout masks are drawn from the run's minibatch count, so they are the
    /// same on a resume.
    /// </summary>
    public void TrainMinibatch(int i) =>
        Step.Run(_o.Sampling == SamplingKind.Random || i == 0 ? StateRule.Reset : StateRule.Carry, i,
            (long)CompletedEpochs * EpochSize + i, _epochX!, _epochY!);

    /// <summary>This rank's rows of time-major global minibatches: within each step t, rows [rank·b, (rank+1)·b) of B.</summary>
    int[] MyShare(int[] global)
    {
        if (_ranks.Size == 1) return global;
        int b = _localBatch, r0 = _ranks.Rank * b, steps = global.Length / _o.Batch;
        var mine = new int[steps * b];
        for (int s = 0; s < steps; s++) Array.Copy(global, s * _o.Batch + r0, mine, s * b, b);
        return mine;
    }

    /// <summary>Minibatches laid end to end as time-major token arrays (X and Y), <paramref name="tb"/> = T·B each.</summary>
    public static (int[] X, int[] Y, int Count) Flatten(IEnumerable<Minibatch> batches, int count, int tb)
    {
        var xs = new int[count * tb];
        var ys = new int[count * tb];
        int n = 0;
        foreach (var mb in batches)
        {
            mb.XTimeMajor.CopyTo(xs, n * tb);
            mb.YTimeMajor.CopyTo(ys, n * tb);
            n++;
        }
        return (xs, ys, n);
    }
}
