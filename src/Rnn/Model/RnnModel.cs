using CharRnn.Rnn.Backends;

namespace CharRnn.Rnn.Model;

/// <summary>One recurrent layer's parameters and gradients (see <see cref="ModelSpec.Parameters"/> for shapes).</summary>
public sealed class LayerTensors
{
    public required Tensor Wx, Wh, Bx, DWx, DWh, DBx;   // (In × G·H), (H × G·H), (1 × G·H) and their gradients
    public Tensor? Bh, DBh;                              // (1 × G·H) PyTorch's bias_hh (concise only)
}

/// <summary>A model's parameters and their gradients, resident on one backend.</summary>
public sealed class RnnModel : IDisposable
{
    public RnnModel(IBackend backend, RnnParameters host)
    {
        Backend = backend;
        Spec = host.Spec;
        var infos = Spec.Parameters;
        Params = new Tensor[infos.Count];
        Grads = new Tensor[infos.Count];
        for (int i = 0; i < infos.Count; i++)
        {
            Params[i] = backend.FromArray(infos[i].Rows, infos[i].Cols, host.Values[i]);
            Grads[i] = backend.Zeros(infos[i].Rows, infos[i].Cols);
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
        Whq = Params[^2]; DWhq = Grads[^2];   // (H × V)
        Bq = Params[^1]; DBq = Grads[^1];     // (1 × V)
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

    public RnnParameters ToHost()
    {
        var p = new RnnParameters(Spec);
        for (int i = 0; i < Params.Length; i++) Backend.Download(Params[i], p.Values[i]);
        return p;
    }

    public float[][] GradsToHost() => Grads.Select(g => Backend.ToArray(g)).ToArray();

    public void Dispose()
    {
        foreach (var t in Params) t.Dispose();
        foreach (var t in Grads) t.Dispose();
    }
}
