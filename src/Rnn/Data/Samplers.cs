namespace CharRnn.Rnn.Data;

public enum SamplingKind { Random, Consecutive }

/// <summary>
/// One minibatch, stored twice over: batch-major as the book prints it (<c>X[b, t]</c> at <c>b*T + t</c>) and
/// time-major as the model consumes it (<c>XTimeMajor[t*B + b]</c>, the row order of the logits).
/// </summary>
public sealed class Minibatch
{
    public Minibatch(int batch, int steps, int[] x, int[] y)
    {
        Batch = batch; Steps = steps; X = x; Y = y;
        XTimeMajor = ToTimeMajor(x, batch, steps);
        YTimeMajor = ToTimeMajor(y, batch, steps);
    }

    public int Batch { get; }
    public int Steps { get; }
    public int[] X { get; }            // (B, T) batch-major
    public int[] Y { get; }            // (B, T) batch-major, X shifted by one
    public int[] XTimeMajor { get; }   // (T*B,)  [t*B + b] = X[b, t]
    public int[] YTimeMajor { get; }   // (T*B,)  [t*B + b] = Y[b, t]

    static int[] ToTimeMajor(int[] a, int batch, int steps)
    {
        var r = new int[a.Length];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < steps; t++) r[t * batch + b] = a[b * steps + t];
        return r;
    }
}

/// <summary>The book's two minibatch iterators (d2l 6.3), with exactly its index arithmetic.</summary>
public static class Samplers
{
    /// <summary>Minibatches per epoch, as the book computes them.</summary>
    public static int EpochSize(SamplingKind kind, int corpusLength, int batch, int steps) => kind switch
    {
        SamplingKind.Random => (corpusLength - 1) / steps / batch,
        _ => (corpusLength / batch - 1) / steps,
    };

    /// <summary>Throws a clear error when the corpus cannot give one minibatch.</summary>
    public static void CheckFits(SamplingKind kind, int corpusLength, int batch, int steps)
    {
        if (EpochSize(kind, corpusLength, batch, steps) >= 1) return;
        int need = kind == SamplingKind.Random ? batch * steps + 1 : batch * (steps + 1);
        throw new CharRnnException(
            $"The corpus has {corpusLength} characters, too few for one minibatch of batch {batch} × steps {steps} " +
            $"with {kind.ToString().ToLowerInvariant()} sampling (needs at least {need}). " +
            "Use a longer corpus (--chars all), or a smaller --batch or --steps.");
    }

    /// <summary>
    /// <c>data_iter_random</c>: <c>num_examples = (len-1)/T</c>, <c>epoch_size = num_examples/B</c>, example indices
    /// shuffled by <paramref name="rng"/> (or taken from <paramref name="permutation"/>), X at <c>j*T</c>, Y at <c>j*T+1</c>.
    /// </summary>
    public static IEnumerable<Minibatch> Random(int[] corpus, int batch, int steps, Rng? rng, int[]? permutation = null)
    {
        int numExamples = (corpus.Length - 1) / steps;
        int epochSize = numExamples / batch;
        int[] exampleIndices;
        if (permutation != null)
        {
            if (permutation.Length != numExamples) throw new ArgumentException($"permutation must have {numExamples} entries");
            exampleIndices = permutation;
        }
        else
        {
            exampleIndices = Enumerable.Range(0, numExamples).ToArray();
            (rng ?? throw new ArgumentNullException(nameof(rng))).Shuffle(exampleIndices);
        }
        return RandomBatches(corpus, batch, steps, exampleIndices, epochSize);
    }

    static IEnumerable<Minibatch> RandomBatches(int[] corpus, int batch, int steps, int[] exampleIndices, int epochSize)
    {
        for (int i = 0; i < epochSize; i++)
        {
            var x = new int[batch * steps];
            var y = new int[batch * steps];
            for (int b = 0; b < batch; b++)
            {
                int j = exampleIndices[i * batch + b];
                Array.Copy(corpus, j * steps, x, b * steps, steps);
                Array.Copy(corpus, j * steps + 1, y, b * steps, steps);
            }
            yield return new Minibatch(batch, steps, x, y);
        }
    }

    /// <summary>
    /// <c>data_iter_consecutive</c>: <c>batch_len = len/B</c>, rows <c>corpus[b*batch_len ...]</c>,
    /// <c>epoch_size = (batch_len-1)/T</c>, X = <c>indices[:, i:i+T]</c>, Y shifted by one.
    /// </summary>
    public static IEnumerable<Minibatch> Consecutive(int[] corpus, int batch, int steps)
    {
        int batchLen = corpus.Length / batch;
        int epochSize = (batchLen - 1) / steps;
        for (int i = 0; i < epochSize; i++)
        {
            var x = new int[batch * steps];
            var y = new int[batch * steps];
            for (int b = 0; b < batch; b++)
            {
                Array.Copy(corpus, b * batchLen + i * steps, x, b * steps, steps);
                Array.Copy(corpus, b * batchLen + i * steps + 1, y, b * steps, steps);
            }
            yield return new Minibatch(batch, steps, x, y);
        }
    }
}
