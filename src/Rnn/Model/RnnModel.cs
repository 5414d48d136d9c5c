using CharRnn.Rnn.Backends;

namespace CharRnn.Rnn.Model;

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
        int k = 0;
        Wxh = Params[k]; DWxh = Grads[k++];                      // (V × H)
        Whh = Params[k]; DWhh = Grads[k++];                      // (H × H)
        Bh = Params[k]; DBh = Grads[k++];                        // (1 × H)
        if (Spec.Kind == ModelKind.Concise) { Bh2 = Params[k]; DBh2 = Grads[k++]; } // (1 × H) nn.RNN's second bias
        Whq = Params[k]; DWhq = Grads[k++];                      // (H × V)
        Bq = Params[k]; DBq = Grads[k];                          // (1 × V)
    }

    public IBackend Backend { get; }
    public ModelSpec Spec { get; }
    public Tensor[] Params { get; }
    public Tensor[] Grads { get; }

    public Tensor Wxh { get; }
    public Tensor Whh { get; }
    public Tensor Bh { get; }
    public Tensor? Bh2 { get; }
    public Tensor Whq { get; }
    public Tensor Bq { get; }
    public Tensor DWxh { get; }
    public Tensor DWhh { get; }
    public Tensor DBh { get; }
    public Tensor? DBh2 { get; }
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
