using CharRnn.Rnn.Backends;

namespace CharRnn.Rnn.Model;

/// <summary>
/// Scratch = the book's from-scratch models (6.4/6.7/6.8: one bias per gate, N(0, 0.01) weights, zero biases);
/// Concise = PyTorch's nn.RNN/nn.GRU/nn.LSTM + Linear (6.5 and the concise sections: two biases, U(±1/√H) init).
/// </summary>
public enum ModelKind { Scratch, Concise }

/// <summary>The recurrent cell. Gate blocks are in PyTorch's order: GRU r, z, n; LSTM i, f, g, o.</summary>
public enum CellKind { Rnn, Gru, Lstm }

/// <summary>The shape of a char-RNN: vocabulary V, hidden size H, cell, layers.</summary>
public sealed record ModelSpec(ModelKind Kind, int Vocab, int Hidden, Activation Activation = Activation.Tanh,
    CellKind Cell = CellKind.Rnn, int Layers = 1)
{
    // Both derived lists are cached per instance (by reference: a `with` copy is a new instance, so never stale), since
    // callers index them once per parameter: rebuilt on every call, 1 000 layers cost seconds and 3 000 a minute and a half.
    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<ModelSpec, RecurrentCell> s_cells = new();
    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<ModelSpec, IReadOnlyList<ParameterInfo>> s_parameters = new();

    /// <summary>The cell type: gate count, parameters per layer, initialisation, and each layer's steps.</summary>
    public RecurrentCell CellType => s_cells.GetValue(this, s => RecurrentCell.For(s));

    /// <summary>Gates per cell: RNN 1, GRU 3, LSTM 4.</summary>
    public int Gates => CellType.Gates;

    /// <summary>
    /// Parameters in a fixed order: per layer (<see cref="RecurrentCell.LayerParameters"/>) W_xh (In×G·H), W_hh (H×G·H),
    /// then b_h (scratch) or b_ih, b_hh (concise); then W_hq (H×V), b_q (1×V). Layouts are input-major (<c>x @ W</c>),
    /// gate blocks side by side in columns; PyTorch's <c>rnn.weight_ih_lN</c> (G·H×In) is the transpose of W_xh, its
    /// <c>dense.weight</c> (V×H) the transpose of W_hq.
    /// </summary>
    public IReadOnlyList<ParameterInfo> Parameters => s_parameters.GetValue(this, s => s.BuildParameters());

    IReadOnlyList<ParameterInfo> BuildParameters()
    {
        var cell = CellType;
        var list = new List<ParameterInfo>();
        for (int l = 0; l < Layers; l++) list.AddRange(cell.LayerParameters(l));
        list.Add(new("W_hq", Hidden, Vocab, Kind == ModelKind.Concise ? "dense.weight" : null, -1, ParameterRole.OutputWeight));
        list.Add(new("b_q", 1, Vocab, Kind == ModelKind.Concise ? "dense.bias" : null, -1, ParameterRole.OutputBias));
        return list.AsReadOnly();
    }

    /// <summary>
    /// The element counts of the largest parameter tensor and of all parameters together, computed from the fields
    /// alone (no list is built, no arithmetic overflows whatever they hold): what size checks use before anything is
    /// allocated.
    /// </summary>
    public (Int128 Largest, Int128 Total) ParameterSize()
    {
        Int128 v = Vocab, h = Hidden, gh = (Int128)Gates * Hidden, layers = Layers;
        int biases = Kind == ModelKind.Concise ? 2 : 1;
        Int128 largest = Max(Max(v * gh, h * gh), h * v);
        Int128 total = v * gh + (layers - 1) * h * gh   // input weights: the vocabulary into layer 0, H into the others
                     + layers * (h * gh + biases * gh) // hidden weights and biases
                     + h * v + v;                      // output layer
        return (largest, total);
    }

    static Int128 Max(Int128 a, Int128 b) => a > b ? a : b;

    public void Validate()
    {
        if (Vocab < 1) throw new CharRnnException($"The vocabulary must have at least one character (got {Vocab}).");
        if (Hidden < 1) throw new CharRnnException($"--hidden must be at least 1 (got {Hidden}).");
        if (Layers < 1) throw new CharRnnException($"--layers must be at least 1 (got {Layers}).");
        if (Activation == Activation.Relu && Cell != CellKind.Rnn)
            throw new CharRnnException("--activation relu applies to the plain RNN cell only (GRU and LSTM use their own sigmoid/tanh gates).");
    }
}

public enum ParameterRole { InputWeight, HiddenWeight, InputBias, HiddenBias, OutputWeight, OutputBias }

/// <summary>One parameter: our name, shape (Rows×Cols, biases 1×n), the PyTorch state_dict name where it has one
/// (weights stored transposed there), the layer (-1 for the output layer) and its role.</summary>
public sealed record ParameterInfo(string Name, int Rows, int Cols, string? TorchName, int Layer = -1, ParameterRole Role = ParameterRole.InputWeight)
{
    public int Length => Rows * Cols;
}
