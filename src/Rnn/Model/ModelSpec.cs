namespace CharRnn.Rnn.Model;

/// <summary>Scratch = book 6.4 (one bias, N(0, 0.01) init); Concise = book 6.5 nn.RNN + Linear (two biases, uniform init).</summary>
public enum ModelKind { Scratch, Concise }

public enum Activation { Tanh, Relu }

/// <summary>The shape of a one-layer char-RNN: vocabulary V, hidden size H.</summary>
public sealed record ModelSpec(ModelKind Kind, int Vocab, int Hidden, Activation Activation = Activation.Tanh)
{
    /// <summary>
    /// Parameters in a fixed order. Layouts are input-major (<c>x @ W</c>) for both kinds; PyTorch's
    /// <c>rnn.weight_ih_l0</c> (H×V) is the transpose of W_xh, <c>dense.weight</c> (V×H) the transpose of W_hq.
    /// </summary>
    public IReadOnlyList<ParameterInfo> Parameters => Kind == ModelKind.Scratch
        ?
        [
            new("W_xh", Vocab, Hidden, null), new("W_hh", Hidden, Hidden, null), new("b_h", 1, Hidden, null),
            new("W_hq", Hidden, Vocab, null), new("b_q", 1, Vocab, null),
        ]
        :
        [
            new("W_xh", Vocab, Hidden, "rnn.weight_ih_l0"), new("W_hh", Hidden, Hidden, "rnn.weight_hh_l0"),
            new("b_ih", 1, Hidden, "rnn.bias_ih_l0"), new("b_hh", 1, Hidden, "rnn.bias_hh_l0"),
            new("W_hq", Hidden, Vocab, "dense.weight"), new("b_q", 1, Vocab, "dense.bias"),
        ];

    public void Validate()
    {
        if (Vocab < 1) throw new CharRnnException($"The vocabulary must have at least one character (got {Vocab}).");
        if (Hidden < 1) throw new CharRnnException($"--hidden must be at least 1 (got {Hidden}).");
    }
}

/// <summary>One parameter: our name, shape (Rows×Cols, biases 1×n), and the PyTorch state_dict name where it has one
/// (stored transposed for the two weight matrices marked in <see cref="ModelSpec.Parameters"/>).</summary>
public sealed record ParameterInfo(string Name, int Rows, int Cols, string? TorchName)
{
    public int Length => Rows * Cols;
}
