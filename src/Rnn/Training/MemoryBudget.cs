using System.Globalization;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>
/// What a training run will allocate, computed from its options alone (no list is built, no arithmetic overflows),
/// and checked before anything is allocated: no tensor may hold more than 2^31−1 values (the backends index them with
/// int), and the whole must fit in the memory the backend reports free. Each refusal names the size and the fix.
/// </summary>
public static class MemoryBudget
{
    /// <summary>The tensors that dominate a run: parameters (with gradients; Adam's two moments), one layer's workspace
    /// per layer, the output layer's, and the epoch's token ids.</summary>
    static IEnumerable<(string Name, Int128 Rows, Int128 Cols, Int128 Copies)> Tensors(TrainOptions o, int vocab, InputMode input, long corpusChars)
    {
        var spec = o.Spec(vocab);
        Int128 h = o.Hidden, gh = (Int128)spec.Gates * o.Hidden, v = vocab, tb = (Int128)o.Steps * o.Batch, layers = o.Layers;
        Int128 copies = o.Optimizer != OptimizerKind.Sgd ? 4 : 2; // value, gradient (+ Adam's or RMSprop's m, v)
        yield return ("W_xh", v, gh, copies);
        yield return ("W_hh", h, gh, copies * layers);
        if (o.Layers > 1) yield return ("W_xh of the layers above", h, gh, copies * (layers - 1));
        yield return ("W_hq", h, v, copies);
        // Per layer, the cell's workspace: gate-sized buffers (T·B × G·H) and hidden-sized ones ((T+1)·B × H).
        var (gateBuffers, hiddenBuffers) = spec.CellType.WorkspaceBuffers;
        yield return ("the gate pre-activations (steps × batch × gates × hidden)", tb, gh, gateBuffers * layers);
        yield return ("the hidden states (steps × batch × hidden)", tb + o.Batch, h, hiddenBuffers * layers);
        yield return ("the logits (steps × batch × vocabulary)", tb, v, input == InputMode.OneHotGemm ? 3 : 2);
        yield return ("the epoch's token ids", 2, corpusChars, 1);
    }

    /// <summary>Bytes a run of <paramref name="o"/> allocates on its backend (float32 and int32 values), about.</summary>
    public static Int128 Bytes(TrainOptions o, int vocab, InputMode input, long corpusChars) =>
        Tensors(o, vocab, input, corpusChars).Aggregate((Int128)0, (s, t) => s + t.Rows * t.Cols * t.Copies) * sizeof(float);

    /// <summary>Throws a <see cref="CharRnnException"/> naming the size when the run cannot be allocated.</summary>
    public static void Check(TrainOptions o, int vocab, IBackend backend, long corpusChars)
    {
        var input = o.Input ?? backend.DefaultInputMode;
        foreach (var (name, rows, cols, _) in Tensors(o, vocab, input, corpusChars))
            if (rows * cols > int.MaxValue)
                throw new CharRnnException(FormattableString.Invariant(
                    $"{Describe(o)} makes {name} {rows} × {cols} = {rows * cols:N0} values, more than one tensor can hold ({int.MaxValue:N0}). ") +
                    "Use a smaller --hidden, --batch or --steps.");
        var bytes = Bytes(o, vocab, input, corpusChars);
        if (backend.MemoryAvailable is long free && bytes > free)
            throw new CharRnnException(
                $"{Describe(o)} needs about {Gib(bytes)} of {(backend.RunsOnHost ? "memory" : "GPU memory")}, but {backend.Name} has {Gib(free)} free. " +
                "Use a smaller --hidden, --layers, --batch or --steps" + (backend.RunsOnHost ? "." : ", or --device cpu."));
    }

    static string Describe(TrainOptions o) =>
        $"H {o.Hidden} × {o.Layers} layer{(o.Layers == 1 ? "" : "s")}, batch {o.Batch}, steps {o.Steps}";

    static string Gib(Int128 bytes) => ((double)bytes / (1L << 30)).ToString("F1", CultureInfo.InvariantCulture) + " GiB";
}
