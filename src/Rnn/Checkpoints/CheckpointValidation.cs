using System.Text;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;

namespace CharRnn.Rnn.Checkpoints;

/// <summary>
/// Every field of a checkpoint header checked, against the others and against the bytes the file holds, before any
/// tensor is allocated: a hand-built header with a valid hash (null fields, impossible shapes, an undefined cell, an
/// all-zero generator, a header that contradicts its own options) is refused with one message, never a crash or a hang.
/// </summary>
internal static class CheckpointValidation
{
    public static ModelSpec Validate(CheckpointHeader h, long tensorBytes, Func<string, string> bad)
    {
        void Fail(string what) => throw new CharRnnException(bad(what));
        var o = h.Options;
        if (o is null) Fail("has no run options in its header; the file is damaged.");
        foreach (var (name, value) in new (string, Enum?)[]
                 {
                     ("Model", h.Model), ("Cell", h.Cell), ("Activation", h.Activation), ("Options.Model", o!.Model),
                     ("Options.Cell", o.Cell), ("Options.Activation", o.Activation), ("Options.Sampling", o.Sampling),
                     ("Options.Optimizer", o.Optimizer), ("Options.Input", o.Input),
                 })
            if (value != null && !Enum.IsDefined(value.GetType(), value))
                Fail($"has an undefined {name} ({value}) in its header; the file is damaged.");
        if (o.Prefixes is null || o.Prefixes.Any(p => p is null)) Fail("has no prediction prefixes in its options; the file is damaged.");
        try { o.Validate(); }
        catch (CharRnnException e) { Fail($"holds options no run can have ({e.Message}); the file is damaged."); }
        if ((h.Model, h.Cell, h.Layers, h.Hidden, h.Activation) != (o.Model, o.Cell, o.Layers, o.Hidden, o.Activation))
            Fail($"contradicts itself: its header describes a {h.Model} {h.Cell} ×{h.Layers}, H {h.Hidden}, {h.Activation} " +
                 $"but its options a {o.Model} {o.Cell} ×{o.Layers}, H {o.Hidden}, {o.Activation}; the file is damaged.");
        int vocab = VocabularySize(h.VocabChars, Fail);
        var spec = o.Spec(vocab);
        // Stryker disable once all : o.Validate() above refuses everything ModelSpec.Validate does today (and the vocabulary is ≥ 1);
        // kept for a rule ModelSpec may gain
        try { spec.Validate(); }
        catch (CharRnnException e) { Fail($"describes a model no run can have ({e.Message}); the file is damaged."); }
        if (h.Epoch < 0) Fail($"has a negative epoch count ({h.Epoch}); the file is damaged.");
        if (h.Minibatch < 0 || h.LossRows < 0 || !double.IsFinite(h.LossSum) || h.LossSum < 0 || (h.Minibatch == 0 && h.LossRows != 0))
            Fail($"has an impossible position in its epoch (minibatch {h.Minibatch}, {h.LossRows} loss rows); the file is damaged.");
        if (h.Ranks < 1 || h.Options.Batch % h.Ranks != 0) Fail($"has an impossible rank count ({h.Ranks} for batch {h.Options.Batch}); the file is damaged.");
        if (!Enum.IsDefined(h.Newlines)) Fail($"has an undefined newline rule ({h.Newlines}); the file is damaged.");
        if (h.Backend is string be && be.Any(char.IsControl)) // it is printed on a line of its own ("written on …")
            Fail("has control characters in the name of the backend that wrote it; the file is damaged.");
        // Stryker disable once Equality : at minibatch 0 the loss rows were checked to be 0 just above
        bool insideEpoch = h.Minibatch > 0;
        if (insideEpoch && h.LossRows != (long)h.Minibatch * o.Batch * o.Steps) // each minibatch adds B·T rows of loss
            Fail($"has {h.LossRows} loss rows for {h.Minibatch} minibatches of {o.Batch} × {o.Steps}; the file is damaged.");
        if (h.ValPerplexity is double vp && !(double.IsFinite(vp) && vp >= 1)) Fail($"has an impossible validation perplexity ({vp}); the file is damaged.");
        if (h.History != null && h.History.Any(e => e is null || e.Epoch < 1 || !double.IsFinite(e.Perplexity)))
            Fail("has a damaged run history; the file is damaged.");
        if (h.AdamSteps < 0 || (h.AdamSteps > 0 && o.Optimizer == OptimizerKind.Sgd))
            Fail($"has Adam steps ({h.AdamSteps}) that do not fit its optimizer ({o.Optimizer}); the file is damaged.");
        if (h.DataRngState is not { Length: 4 } rng || rng.All(w => w == 0))
            Fail("has no valid data generator state (4 words, not all zero); the file is damaged.");
        if (h.CorpusSha1 is not { Length: 40 } sha || !sha.All(Uri.IsHexDigit)) Fail("has no valid corpus fingerprint; the file is damaged.");
        if (h.CorpusChars < 1 || h.CorpusLimit is < 1) Fail("has an impossible corpus size; the file is damaged.");
        if (h.Tensors is null || h.Tensors.Any(t => t?.Name is null || t.Length < 0))
            Fail("has a damaged tensor list in its header.");
        long listed = 0;
        foreach (var t in h.Tensors!) listed += (long)t.Length * sizeof(float);
        if (listed < tensorBytes) Fail("has trailing data after its tensors; the file is damaged.");
        if (listed > tensorBytes) Fail("is truncated: its tensors do not fit in the file. Use an earlier checkpoint.");
        var names = h.Tensors.Select(t => t.Name).ToList();
        if (names.Distinct().Count() != names.Count) Fail("lists a tensor twice; the file is damaged.");
        // Sizes from the fields alone before the parameter list is built: what the header promises must be what the file holds.
        var (largest, total) = spec.ParameterSize();
        Int128 state = (Int128)o.Batch * spec.Hidden * spec.Layers * spec.CellType.CarriedState.Count;
        Int128 expected = total * (h.AdamSteps > 0 ? 3 : 1) + state;
        // Stryker disable once Equality : a parameter of exactly int.MaxValue floats is refused below anyway unless the file holds 8 GiB of it
        bool tooLarge = largest > int.MaxValue;
        if (tooLarge || expected * sizeof(float) != tensorBytes)
            Fail("does not hold the tensors its model needs (their sizes do not add up); the file is damaged.");
        var listedByName = h.Tensors.ToDictionary(t => t.Name, t => (long)t.Length);
        var want = ExpectedTensors(h, spec).ToList();
        foreach (var (name, length) in want)
        {
            if (!listedByName.TryGetValue(name, out var have)) Fail($"lacks the tensor {name}; the file is damaged.");
            else if (have != length) Fail($"has {have} values in {name} where the model needs {length}; the file is damaged.");
        }
        foreach (var name in names.Except(want.Select(w => w.Name))) Fail($"has an unexpected tensor {name}; the file is damaged.");
        return spec;
    }

    /// <summary>The vocabulary's size: Unicode scalar values, strictly increasing (as <see cref="Vocabulary"/> builds it).</summary>
    static int VocabularySize(string? chars, Action<string> fail)
    {
        if (string.IsNullOrEmpty(chars)) { fail("has an empty vocabulary; the file is damaged."); return 0; }
        int count = 0, previous = -1;
        for (int i = 0; i < chars.Length;)
        {
            if (Rune.DecodeFromUtf16(chars.AsSpan(i), out var r, out int used) != System.Buffers.OperationStatus.Done || r.Value <= previous)
            {
                fail("has a damaged vocabulary (not sorted, unique Unicode characters); the file is damaged.");
                return 0;
            }
            previous = r.Value;
            i += used;
            count++;
        }
        return count;
    }

    /// <summary>
    /// The tensors a checkpoint of this header must hold, with their lengths: every parameter; Adam's two moments per
    /// parameter once Adam has stepped; the carried state per layer (H, and C for the LSTM), B × H each.
    /// </summary>
    public static IEnumerable<(string Name, long Length)> ExpectedTensors(CheckpointHeader h, ModelSpec spec)
    {
        foreach (var p in spec.Parameters) yield return ("param/" + p.Name, p.Length);
        if (h.AdamSteps > 0)
            foreach (var prefix in new[] { "adam_m/", "adam_v/" })
                foreach (var p in spec.Parameters) yield return (prefix + p.Name, p.Length);
        long state = (long)h.Options.Batch * spec.Hidden;
        foreach (var name in spec.CellType.StateTensorNames()) yield return (name, state);
    }
}
