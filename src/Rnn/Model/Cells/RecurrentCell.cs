using CharRnn.Rnn.Backends;

namespace CharRnn.Rnn.Model; // the cells live in Model/Cells but share the model's namespace: a spec names its cell, a cell reads its spec

/// <summary>
/// A recurrent cell type: its gate count, its parameters per layer and their initialisation, and (through
/// <see cref="CreateLayer"/>) one layer's workspace with its forward and backward step. The BPTT driver knows no cell
/// kind; it asks the cell. Four cells: the plain RNN (tanh or relu), PyTorch's GRU, the book's scratch GRU (reset gate
/// before the product) and the LSTM, each with the book's one bias per gate (scratch) or PyTorch's two (concise).
/// </summary>
public abstract class RecurrentCell(ModelSpec spec)
{
    public ModelSpec Spec { get; } = spec;

    /// <summary>Gate blocks side by side in the G·H columns (PyTorch's order): RNN 1, GRU 3 (r, z, n), LSTM 4 (i, f, g, o).</summary>
    public abstract int Gates { get; }

    public static RecurrentCell For(ModelSpec spec) => spec.Cell switch
    {
        CellKind.Rnn => new RnnCell(spec),
        CellKind.Lstm => new LstmCell(spec),
        CellKind.Gru when spec.Kind == ModelKind.Scratch => new BookGruCell(spec),
        CellKind.Gru => new GruCell(spec),
        _ => throw new ArgumentOutOfRangeException(nameof(spec), spec.Cell, "unknown cell"),
    };

    /// <summary>Two biases per gate (PyTorch's b_ih and b_hh: the concise models) or one (the book's b_h).</summary>
    public bool TwoBiases => Spec.Kind == ModelKind.Concise;

    /// <summary>
    /// Layer l's parameters, in order: W_xh (In × G·H), W_hh (H × G·H), then b_h (scratch) or b_ih, b_hh (concise),
    /// each 1 × G·H; names suffixed _l1, _l2… above layer 0; PyTorch's state_dict names for the concise models.
    /// </summary>
    public IEnumerable<ParameterInfo> LayerParameters(int l)
    {
        string s = l == 0 ? "" : $"_l{l}";
        int inputs = l == 0 ? Spec.Vocab : Spec.Hidden, gh = Gates * Spec.Hidden;
        yield return new($"W_xh{s}", inputs, gh, TwoBiases ? $"rnn.weight_ih_l{l}" : null, l, ParameterRole.InputWeight);
        yield return new($"W_hh{s}", Spec.Hidden, gh, TwoBiases ? $"rnn.weight_hh_l{l}" : null, l, ParameterRole.HiddenWeight);
        if (TwoBiases)
        {
            yield return new($"b_ih{s}", 1, gh, $"rnn.bias_ih_l{l}", l, ParameterRole.InputBias);
            yield return new($"b_hh{s}", 1, gh, $"rnn.bias_hh_l{l}", l, ParameterRole.HiddenBias);
        }
        else yield return new($"b_h{s}", 1, gh, null, l, ParameterRole.InputBias);
    }

    /// <summary>
    /// The book's initialisation of one parameter (the output layer's too). Scratch: weights N(0, 0.01), biases 0
    /// (d2l 6.4/6.7/6.8 <c>get_params</c>). Concise: U(−1/√H, 1/√H), what nn.RNN/GRU/LSTM and nn.Linear(H, V) draw.
    /// </summary>
    public void Initialize(ParameterInfo info, float[] values, Rng rng)
    {
        if (!TwoBiases)
        {
            if (info.Rows == 1) return; // biases start at zero
            for (int j = 0; j < values.Length; j++) values[j] = (float)(rng.NextNormal() * 0.01);
            return;
        }
        double bound = 1.0 / Math.Sqrt(Spec.Hidden);
        for (int j = 0; j < values.Length; j++) values[j] = (float)((rng.NextDouble() * 2 - 1) * bound);
    }

    /// <summary>The state each layer carries from one minibatch to the next, by its checkpoint name: H, and the LSTM's
    /// cell state C (tensors <c>state/H0</c>, <c>state/C0</c>, … of a checkpoint).</summary>
    public virtual IReadOnlyList<string> CarriedState => ["H"];

    /// <summary>The PyTorch module that computes this cell (<c>nn.RNN</c>, <c>nn.GRU</c>, <c>nn.LSTM</c>), or null where
    /// none does (the book's scratch GRU): what export writes, or refuses.</summary>
    public abstract string? TorchModule { get; }

    /// <summary>The checkpoint names of every layer's carried state, layer by layer.</summary>
    public IEnumerable<string> StateTensorNames() =>
        Enumerable.Range(0, Spec.Layers).SelectMany(l => CarriedState.Select(s => $"state/{s}{l}"));

    /// <summary>A layer's workspace, for memory estimates before anything is allocated: buffers of T·B × G·H floats
    /// (gate-sized) and of (T+1)·B × H (hidden-sized). The base layer has two of each (Pre, DPre; Hs, DH with DH0);
    /// a cell adds its own (<see cref="CellLayer.WorkspaceFloats"/> is what one really holds).</summary>
    public virtual (int GateSized, int HiddenSized) WorkspaceBuffers => (2, 2);

    /// <summary>One layer's workspace for <paramref name="steps"/> steps of <paramref name="batch"/> rows, with its steps.</summary>
    public abstract CellLayer CreateLayer(IBackend be, LayerTensors p, int batch, int steps);
}
