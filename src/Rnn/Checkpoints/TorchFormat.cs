using System.Globalization;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Checkpoints;

/// <summary>A trained model without its run: what generation and fine-tuning need, from a checkpoint or an imported file.</summary>
public sealed record PortableModel(ModelSpec Spec, RnnParameters Parameters, string VocabChars, string? Prefix, NewlineMode Newlines)
{
    public Vocabulary Vocabulary => new(VocabChars.EnumerateRunes());

    /// <summary>The options of the run that trained it, when it comes from a checkpoint (null for an imported file).</summary>
    public Training.TrainOptions? RunOptions { get; init; }

    /// <summary>The text its run trained on (full path) and how much of it, when it comes from a checkpoint.</summary>
    public string? CorpusPath { get; init; }
    public int? CorpusLimit { get; init; }

    /// <summary>The options a new run starts from on this model: its run's, or the preset of its kind with its shape.</summary>
    public Training.TrainOptions StartingOptions => RunOptions ?? Training.TrainOptions.Preset(Spec.Kind == ModelKind.Concise ? "concise" : "scratch-random") with
    {
        Cell = Spec.Cell, Layers = Spec.Layers, Hidden = Spec.Hidden, Activation = Spec.Activation,
    };

    /// <summary>What a fine-tune from this model starts from (<see cref="Training.RunRules"/> decides with it).</summary>
    public Training.RunOrigin Origin => new(StartingOptions, CorpusPath, CorpusLimit, Newlines);

    public static PortableModel Of(Checkpoint ck) =>
        new(ck.Spec, ck.Parameters(), ck.Header.VocabChars, ck.Header.Options.Prefixes.FirstOrDefault(), ck.Header.Newlines)
        {
            RunOptions = ck.Header.Options, CorpusPath = ck.Header.CorpusPath, CorpusLimit = ck.Header.CorpusLimit,
        };

    /// <summary>A checkpoint, or a safetensors model (by its extension or its first bytes), with the fix for each.</summary>
    public static PortableModel Load(string path)
    {
        AtomicFile.CheckInput(path, "The model"); // before IsSafeTensors peeks at its first bytes
        return TorchFormat.IsSafeTensors(path) ? TorchFormat.Import(path) : Of(Checkpoint.Load(path));
    }
}

/// <summary>
/// CharRnn's models under PyTorch's own names and layouts, as the book's concise <c>RNNModel</c> would save them
/// (<c>nn.RNN</c>/<c>nn.GRU</c>/<c>nn.LSTM</c> as <c>rnn</c> + <c>nn.Linear</c> as <c>dense</c>):
/// <c>rnn.weight_ih_l{k}</c> (G·H × In), <c>rnn.weight_hh_l{k}</c> (G·H × H), <c>rnn.bias_ih_l{k}</c>,
/// <c>rnn.bias_hh_l{k}</c> (G·H), <c>dense.weight</c> (V × H), <c>dense.bias</c> (V); gate blocks in PyTorch's order
/// (ours already). CharRnn stores weights input-major (x @ W), so every weight is transposed on the way. The
/// vocabulary and hyperparameters travel in <c>__metadata__</c> (<c>charrnn.*</c> keys).
/// </summary>
public static class TorchFormat
{
    public const string Vocab = "charrnn.vocab", Cell = "charrnn.cell", Layers = "charrnn.layers", Hidden = "charrnn.hidden",
        Nonlinearity = "charrnn.nonlinearity", Kind = "charrnn.model", Prefix = "charrnn.prefix", Newlines = "charrnn.newlines";

    public static bool IsSafeTensors(string path)
    {
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return true;
        try
        {
            using var f = File.OpenRead(path);
            Span<byte> head = stackalloc byte[9];
            return f.ReadAtLeast(head, 9, throwOnEndOfStream: false) == 9 && head[8] == (byte)'{' && !head[..7].SequenceEqual("CHARRNN"u8);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    static float[] Transpose(float[] a, int rows, int cols)
    {
        var t = new float[a.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
        return t;
    }

    /// <summary>The model's tensors under PyTorch's names; the book's scratch GRU (no nn.GRU computes it) is refused.</summary>
    public static void Export(PortableModel m, string path, int? epochs = null)
    {
        var spec = m.Spec;
        if (spec.CellType.TorchModule == null)
            throw new CharRnnException(
                "This is the book's scratch GRU (d2l 6.7), which applies the reset gate before the product, (r ⊙ h)·U_n; nn.GRU applies it " +
                "after, r ⊙ (h·U_n + b_hn), so no PyTorch GRU holds this model. Export an RNN, an LSTM, or a GRU trained with --preset gru-concise.");
        var tensors = new Dictionary<string, SafeTensor>();
        var infos = spec.Parameters;
        for (int l = 0; l < spec.Layers; l++)
        {
            float[] V(ParameterRole role) => m.Parameters.Values[Index(infos, l, role)];
            var wx = infos[Index(infos, l, ParameterRole.InputWeight)];
            tensors[$"rnn.weight_ih_l{l}"] = new([wx.Cols, wx.Rows], Transpose(V(ParameterRole.InputWeight), wx.Rows, wx.Cols));
            var wh = infos[Index(infos, l, ParameterRole.HiddenWeight)];
            tensors[$"rnn.weight_hh_l{l}"] = new([wh.Cols, wh.Rows], Transpose(V(ParameterRole.HiddenWeight), wh.Rows, wh.Cols));
            tensors[$"rnn.bias_ih_l{l}"] = new([wx.Cols], (float[])V(ParameterRole.InputBias).Clone());
            tensors[$"rnn.bias_hh_l{l}"] = new([wx.Cols], spec.Kind == ModelKind.Concise ? (float[])V(ParameterRole.HiddenBias).Clone() : new float[wx.Cols]);
        }
        var whq = infos[Index(infos, -1, ParameterRole.OutputWeight)];
        tensors["dense.weight"] = new([whq.Cols, whq.Rows], Transpose(m.Parameters.Values[Index(infos, -1, ParameterRole.OutputWeight)], whq.Rows, whq.Cols));
        tensors["dense.bias"] = new([spec.Vocab], (float[])m.Parameters.Values[Index(infos, -1, ParameterRole.OutputBias)].Clone());
        var meta = new Dictionary<string, string>
        {
            ["format"] = "pt",
            [Vocab] = m.VocabChars,
            [Cell] = spec.Cell.ToString().ToLowerInvariant(),
            [Layers] = spec.Layers.ToString(CultureInfo.InvariantCulture),
            [Hidden] = spec.Hidden.ToString(CultureInfo.InvariantCulture),
            [Nonlinearity] = spec.Activation == Activation.Relu ? "relu" : "tanh",
            [Kind] = spec.Kind.ToString().ToLowerInvariant(),
            [Newlines] = m.Newlines.ToString().ToLowerInvariant(),
        };
        if (m.Prefix != null) meta[Prefix] = m.Prefix;
        if (epochs is int e) meta["charrnn.epochs"] = e.ToString(CultureInfo.InvariantCulture);
        SafeTensors.Write(path, tensors, meta);
    }

    static int Index(IReadOnlyList<ParameterInfo> infos, int layer, ParameterRole role)
    {
        for (int i = 0; i < infos.Count; i++) if (infos[i].Layer == layer && infos[i].Role == role) return i;
        throw new KeyNotFoundException($"{role} of layer {layer}");
    }

    /// <summary>
    /// A model from a safetensors file in PyTorch's layout (written by <see cref="Export"/> or by PyTorch itself): the
    /// cell from the gate blocks' height (1, 3 or 4 × H), the layers from the names, the vocabulary from the metadata.
    /// A model written as one of the book's scratch models (one bias: its bias_hh all zero) comes back as one.
    /// </summary>
    static readonly System.Text.RegularExpressions.Regex TorchName =
        new(@"^(rnn\.(weight|bias)_(ih|hh)_l\d{1,4}|dense\.(weight|bias))$");

    public static PortableModel Import(string path)
    {
        Layout? layout = null;
        // The shapes are checked from the header, before any data is read: a small sparse file may declare gigabytes.
        var (t, meta) = SafeTensors.Read(path, TorchName.IsMatch, "a char-RNN holds rnn.* and dense.* under PyTorch's names",
            (shapes, metadata) => layout = CheckLayout(path, shapes, metadata));
        var (vocabChars, vocab, h, cell, layers, act) = layout!;
        bool zeroBhh = Enumerable.Range(0, layers).All(l => t[$"rnn.bias_hh_l{l}"].Data.All(v => v == 0));
        bool scratch = meta.GetValueOrDefault(Kind) == "scratch" && zeroBhh && cell != CellKind.Gru;
        var spec = new ModelSpec(scratch ? ModelKind.Scratch : ModelKind.Concise, vocab, h, act, cell, layers);
        spec.Validate();
        var p = new RnnParameters(spec);
        var infos = spec.Parameters;
        for (int i = 0; i < infos.Count; i++)
        {
            var info = infos[i];
            p.Values[i] = info.Role switch
            {
                ParameterRole.InputWeight => Transpose(t[$"rnn.weight_ih_l{info.Layer}"].Data, info.Cols, info.Rows),
                ParameterRole.HiddenWeight => Transpose(t[$"rnn.weight_hh_l{info.Layer}"].Data, info.Cols, info.Rows),
                ParameterRole.InputBias => t[$"rnn.bias_ih_l{info.Layer}"].Data,
                ParameterRole.HiddenBias => t[$"rnn.bias_hh_l{info.Layer}"].Data,
                ParameterRole.OutputWeight => Transpose(t["dense.weight"].Data, info.Cols, info.Rows),
                _ => t["dense.bias"].Data,
            };
        }
        vocabChars = ToCodePointOrder(vocabChars, spec, p);
        var newlines = meta.GetValueOrDefault(Newlines) == "keep" ? NewlineMode.Keep : NewlineMode.Space;
        return new PortableModel(spec, p, vocabChars, meta.GetValueOrDefault(Prefix), newlines);
    }

    /// <summary>
    /// CharRnn numbers a vocabulary in code-point order; a file may list its characters in any order (PyTorch code
    /// often orders by frequency or first appearance). The rows and columns that belong to characters — layer 0's input
    /// weight columns (its one-hot inputs), the output weight's rows and bias — are moved to CharRnn's order, so the
    /// model computes exactly what it computed before. Returns the vocabulary in that order.
    /// </summary>
    static string ToCodePointOrder(string fileChars, ModelSpec spec, RnnParameters p)
    {
        var ours = new Vocabulary(fileChars.EnumerateRunes());
        if (ours.ToString() == fileChars) return fileChars;
        var to = fileChars.EnumerateRunes().Select(r => ours.TryGetIndex(r, out int i) ? i : throw new InvalidOperationException()).ToArray();
        int v = to.Length;
        for (int k = 0; k < spec.Parameters.Count; k++)
        {
            var info = spec.Parameters[k];
            var a = p.Values[k];
            var b = new float[a.Length];
            if (info.Role == ParameterRole.InputWeight && info.Layer == 0) // ours: V rows (the one-hot input) × G·H
                for (int f = 0; f < v; f++) Array.Copy(a, f * info.Cols, b, to[f] * info.Cols, info.Cols);
            else if (info.Role == ParameterRole.OutputWeight) // ours: H rows × V columns
                for (int r = 0; r < info.Rows; r++)
                    for (int f = 0; f < v; f++) b[r * info.Cols + to[f]] = a[r * info.Cols + f];
            else if (info.Role == ParameterRole.OutputBias)
                for (int f = 0; f < v; f++) b[to[f]] = a[f];
            else continue;
            p.Values[k] = b;
        }
        return ours.ToString();
    }

    sealed record Layout(string VocabChars, int Vocab, int Hidden, CellKind Cell, int Layers, Activation Activation);

    /// <summary>The model a file's header describes — vocabulary, H, cell, layers, nonlinearity — with every tensor's
    /// shape, every name and the metadata checked against it.</summary>
    static Layout CheckLayout(string path, IReadOnlyDictionary<string, long[]> t, IReadOnlyDictionary<string, string> meta)
    {
        string Bad(string what) => $"{path} does not hold a CharRnn/PyTorch char-RNN: {what}";
        if (!meta.TryGetValue(Vocab, out var vocabChars) || vocabChars.Length == 0)
            throw new CharRnnException(Bad($"its __metadata__ has no '{Vocab}' (the model's characters, in index order)."));
        int vocab = vocabChars.EnumerateRunes().Count();
        if (vocabChars.EnumerateRunes().Distinct().Count() != vocab)
            throw new CharRnnException(Bad($"'{Vocab}' lists a character twice; it must list the model's distinct characters in index order."));
        long[] Need(string name, params long[] shape)
        {
            if (!t.TryGetValue(name, out var x)) throw new CharRnnException(Bad($"it lacks the tensor {name}."));
            if (shape.Length > 0 && !x.SequenceEqual(shape))
                throw new CharRnnException(Bad($"{name} has shape [{string.Join(", ", x)}] where [{string.Join(", ", shape)}] is needed."));
            return x;
        }
        var hh0 = Need("rnn.weight_hh_l0");
        if (hh0.Length != 2 || hh0[1] == 0 || hh0[0] % hh0[1] != 0)
            throw new CharRnnException(Bad("rnn.weight_hh_l0 is not a (gates·H × H) matrix."));
        int h = (int)hh0[1], gates = (int)(hh0[0] / h);
        var cell = gates switch
        {
            1 => CellKind.Rnn, 3 => CellKind.Gru, 4 => CellKind.Lstm,
            _ => throw new CharRnnException(Bad($"rnn.weight_hh_l0 has {gates}·H rows; an RNN has 1, a GRU 3, an LSTM 4.")),
        };
        if (meta.TryGetValue(Cell, out var c) && c != cell.ToString().ToLowerInvariant())
            throw new CharRnnException(Bad($"its metadata says {c} but its weights are a {cell.ToString().ToLowerInvariant()}'s."));
        int layers = 0;
        while (t.ContainsKey($"rnn.weight_ih_l{layers}")) layers++;
        var act = meta.GetValueOrDefault(Nonlinearity, "tanh") switch
        {
            "tanh" => Activation.Tanh, "relu" when cell == CellKind.Rnn => Activation.Relu,
            var x => throw new CharRnnException(Bad($"nonlinearity '{x}' is not one CharRnn has for a {cell}.")),
        };
        int gh = gates * h;
        for (int l = 0; l < layers; l++)
        {
            Need($"rnn.weight_ih_l{l}", gh, l == 0 ? vocab : h);
            Need($"rnn.weight_hh_l{l}", gh, h);
            Need($"rnn.bias_ih_l{l}", gh);
            Need($"rnn.bias_hh_l{l}", gh);
        }
        Need("dense.weight", vocab, h);
        Need("dense.bias", vocab);
        var expected = Enumerable.Range(0, layers).SelectMany(l => new[] { $"rnn.weight_ih_l{l}", $"rnn.weight_hh_l{l}", $"rnn.bias_ih_l{l}", $"rnn.bias_hh_l{l}" })
            .Concat(["dense.weight", "dense.bias"]).ToHashSet();
        if (t.Keys.FirstOrDefault(k => !expected.Contains(k)) is string extra)
            throw new CharRnnException(Bad($"it has a tensor CharRnn does not know, {extra}."));
        // What the metadata states must be what the tensors are (it was ignored: a file could say 3 layers and hold 1).
        foreach (var (key, actual) in new[] { (Layers, layers), (Hidden, h) })
            if (meta.TryGetValue(key, out var stated) && stated != actual.ToString(System.Globalization.CultureInfo.InvariantCulture))
                throw new CharRnnException(Bad($"its metadata says {key} {stated} but its tensors hold {actual}."));
        return new Layout(vocabChars, vocab, h, cell, layers, act);
    }
}
