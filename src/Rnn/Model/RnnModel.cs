using CharRnn.Rnn.Backends;

namespace CharRnn.Rnn.Model;

/// <summary>One recurrent layer's parameters and gradients (see <see cref="ModelSpec.Parameters"/> for shapes).</summary>
public sealed class LayerTensors
{
    public required Tensor Wx, Wh, Bx, DWx, DWh, DBx;   // (In × G·H), (H × G·H), (1 × G·H) and their gradients
    public Tensor? Bh, DBh;                              // (1 × G·H) PyTorch's bias_hh (concise only)
}

/// <summary>
/// A model's parameters and their gradients, resident on one backend. The output layer's vocabulary dimension is
/// stored <see cref="OutputWidth"/> wide (<see cref="IBackend.PaddedVocabulary"/>: the GPU pads it to whole 32-byte
/// rows, which its GEMMs handle faster than a width like 2582): W_hq's pad columns are 0 and b_q's are −∞, so the pad
/// logits are −∞, their softmax probability 0, their gradients 0 — loss, perplexity, argmax and sampling are those of
/// the V real columns, and the updates leave the pads as they are. What leaves the backend (<see cref="ToHost"/>,
/// <see cref="GradsToHost"/>, <see cref="ToLogical"/>) drops the pads; what enters it (<see cref="ToStored"/>) gets them.
/// </summary>
public sealed class RnnModel : IDisposable
{
    public RnnModel(IBackend backend, RnnParameters host)
    {
        Backend = backend;
        Spec = host.Spec;
        var infos = Spec.Parameters;
        Params = new Tensor[infos.Count];
        Grads = new Tensor[infos.Count];
        OutputWidth = backend.PaddedVocabulary(Spec.Vocab);
        for (int i = 0; i < infos.Count; i++)
        {
            Params[i] = backend.FromArray(infos[i].Rows, StoredCols(i), ToStored(i, host.Values[i], padBias: true));
            Grads[i] = backend.Zeros(infos[i].Rows, StoredCols(i));
        }
        var layers = new List<LayerTensors>();
        for (int l = 0; l < Spec.Layers; l++)
        {
            Tensor P(ParameterRole r) => Params[IndexOf(l, r)];
            Tensor G(ParameterRole r) => Grads[IndexOf(l, r)];
            bool two = Spec.Kind == ModelKind.Concise;
            layers.Add(new LayerTensors
            {
                Wx = P(ParameterRole.InputWeight), Wh = P(ParameterRole.HiddenWeight), Bx = P(ParameterRole.InputBias),
                DWx = G(ParameterRole.InputWeight), DWh = G(ParameterRole.HiddenWeight), DBx = G(ParameterRole.InputBias),
                Bh = two ? P(ParameterRole.HiddenBias) : null, DBh = two ? G(ParameterRole.HiddenBias) : null,
            });
        }
        Layers = layers;
        Whq = Params[^2]; DWhq = Grads[^2];   // (H × OutputWidth)
        Bq = Params[^1]; DBq = Grads[^1];     // (1 × OutputWidth)
    }

    int IndexOf(int layer, ParameterRole role)
    {
        var infos = Spec.Parameters;
        for (int i = 0; i < infos.Count; i++) if (infos[i].Layer == layer && infos[i].Role == role) return i;
        throw new KeyNotFoundException($"layer {layer} {role}");
    }

    public IBackend Backend { get; }
    public ModelSpec Spec { get; }
    public Tensor[] Params { get; }
    public Tensor[] Grads { get; }
    public IReadOnlyList<LayerTensors> Layers { get; }
    public Tensor Whq { get; }
    public Tensor Bq { get; }
    public Tensor DWhq { get; }
    public Tensor DBq { get; }

    /// <summary>The stored width of the output layer's vocabulary dimension (V, or V padded on the GPU).</summary>
    public int OutputWidth { get; }

    bool Padded(int i) => OutputWidth != Spec.Vocab && i >= Params.Length - 2; // W_hq (H × V) and b_q (1 × V)

    int StoredCols(int i) => Padded(i) ? OutputWidth : Spec.Parameters[i].Cols;

    /// <summary>Parameter <paramref name="i"/>'s logical values (or a gradient's, or an optimizer moment's) laid out as
    /// stored: rows widened to <see cref="OutputWidth"/> with 0, or −∞ for b_q's value (<paramref name="padBias"/>).</summary>
    public float[] ToStored(int i, float[] logical, bool padBias = false)
    {
        if (!Padded(i)) return logical;
        int rows = Spec.Parameters[i].Rows, v = Spec.Vocab, w = OutputWidth;
        var stored = new float[rows * w];
        float fill = padBias && i == Params.Length - 1 ? float.NegativeInfinity : 0f;
        for (int r = 0; r < rows; r++)
        {
            logical.AsSpan(r * v, v).CopyTo(stored.AsSpan(r * w, v));
            stored.AsSpan(r * w + v, w - v).Fill(fill);
        }
        return stored;
    }

    /// <summary>The logical values of a tensor stored like parameter <paramref name="i"/> (pads dropped).</summary>
    public float[] ToLogical(int i, float[] stored) => Padded(i) ? DropPads(stored, Spec.Parameters[i].Rows) : stored;

    /// <summary>Rows stored <see cref="OutputWidth"/> wide (W_hq, b_q, logits, …) cut to their first V columns.</summary>
    public float[] DropPads(float[] stored, int rows)
    {
        int v = Spec.Vocab, w = OutputWidth;
        if (v == w) return stored;
        var logical = new float[rows * v];
        for (int r = 0; r < rows; r++) stored.AsSpan(r * w, v).CopyTo(logical.AsSpan(r * v, v));
        return logical;
    }

    public RnnParameters ToHost()
    {
        var p = new RnnParameters(Spec);
        for (int i = 0; i < Params.Length; i++)
            if (Padded(i)) ToLogical(i, Backend.ToArray(Params[i])).CopyTo(p.Values[i], 0);
            else Backend.Download(Params[i], p.Values[i]);
        return p;
    }

    public float[][] GradsToHost() => Grads.Select((g, i) => ToLogical(i, Backend.ToArray(g))).ToArray();

    public void Dispose()
    {
        foreach (var t in Params) t.Dispose();
        foreach (var t in Grads) t.Dispose();
    }
}
