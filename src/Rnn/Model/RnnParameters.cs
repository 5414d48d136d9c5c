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

    /// <summary>The book's initialisation (<see cref="RecurrentCell.Initialize"/>), parameters in order from one generator.</summary>
    public static RnnParameters Initialize(ModelSpec spec, Rng rng)
    {
        spec.Validate();
        var p = new RnnParameters(spec);
        var cell = spec.CellType;
        var infos = spec.Parameters;
        for (int i = 0; i < infos.Count; i++) cell.Initialize(infos[i], p.Values[i], rng);
        return p;
    }

    public RnnParameters Clone()
    {
        var c = new RnnParameters(Spec);
        for (int i = 0; i < Values.Length; i++) Values[i].CopyTo(c.Values[i], 0);
        return c;
    }
}
