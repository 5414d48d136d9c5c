namespace CharRnn.Rnn.Model;

/// <summary>Host copy of a model's parameters, float32, in <see cref="ModelSpec.Parameters"/> order.</summary>
public sealed class RnnParameters
{
    public RnnParameters(ModelSpec spec)
    {
        Spec = spec;
        Values = spec.Parameters.Select(p => new float[p.Length]).ToArray();
    }

    public ModelSpec Spec { get; }
    public float[][] Values { get; }

    public float[] this[string name]
    {
        get
        {
            var list = Spec.Parameters;
            for (int i = 0; i < list.Count; i++) if (list[i].Name == name) return Values[i];
            throw new KeyNotFoundException(name);
        }
    }

    /// <summary>
    /// The book's initialisation. Scratch: weights N(0, 0.01), biases 0 (d2l 6.4/6.7/6.8 <c>get_params</c>).
    /// Concise: every parameter U(-1/√H, 1/√H), which is what nn.RNN/GRU/LSTM and nn.Linear(H, V) all draw.
    /// </summary>
    public static RnnParameters Initialize(ModelSpec spec, Rng rng)
    {
        spec.Validate();
        var p = new RnnParameters(spec);
        var infos = spec.Parameters;
        for (int i = 0; i < infos.Count; i++)
        {
            var v = p.Values[i];
            if (spec.Kind == ModelKind.Scratch)
            {
                if (infos[i].Rows == 1) continue; // biases start at zero
                for (int j = 0; j < v.Length; j++) v[j] = (float)(rng.NextNormal() * 0.01);
            }
            else
            {
                double bound = 1.0 / Math.Sqrt(spec.Hidden);
                for (int j = 0; j < v.Length; j++) v[j] = (float)((rng.NextDouble() * 2 - 1) * bound);
            }
        }
        return p;
    }

    public RnnParameters Clone()
    {
        var c = new RnnParameters(Spec);
        for (int i = 0; i < Values.Length; i++) Values[i].CopyTo(c.Values[i], 0);
        return c;
    }
}
