using System.Globalization;
using System.CommandLine;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends;

namespace CharRnn.Cli;

/// <summary>The options several commands share, defined once.</summary>
internal static class CommonOptions
{
    public static Option<string> Device() =>
        new("--device") { Description = "auto (GPU if usable, else CPU), cpu, cuda or cuda:N.", DefaultValueFactory = _ => "auto" };

    public static Option<string?> Blas()
    {
        var o = new Option<string?>("--blas") { Description = "CPU GEMM engine: openblas (default when libopenblas.so.0 loads) or managed." };
        o.AcceptOnlyFromAmong("openblas", "managed");
        return o;
    }

    public static Option<string?> Input()
    {
        var o = new Option<string?>("--input") { Description = "How onehot(X)·W_xh is computed: gather (a row gather, its gradient a scatter-add; the default) or onehot (the book's one-hot scatter + GEMMs). Equal forward results." };
        o.AcceptOnlyFromAmong("gather", "onehot");
        return o;
    }

    /// <summary>An option taking one of <paramref name="values"/>, the first being the default.</summary>
    static Option<string> Choice(string name, string description, params string[] values)
    {
        var o = new Option<string>(name) { Description = description, DefaultValueFactory = _ => values[0] };
        o.AcceptOnlyFromAmong(values);
        return o;
    }

    public static Option<string> Precision() => Choice("--precision",
        "GPU GEMMs: fp32 (the default, as PyTorch's matmuls), tf32 (TF32 tensor cores: faster, 10-bit-mantissa products) or bf16 (operands rounded to bfloat16, FP32 accumulation: faster still; weights, optimizer, loss and checkpoints stay FP32). The CPU computes in FP32.",
        "fp32", "tf32", "bf16");

    public static Option<string> Recurrence() => Choice("--recurrence",
        "GPU, RNN cell: auto (the fastest of per-step, grid-persistent and cluster kernels as timed on this card on first use of a shape, cached in ~/.cache/charrnn/plans.json; CHARRNN_PLAN_CACHE moves it, =off keeps none; CHARRNN_PLAN_TIMING=off skips the timing for the untimed rule: grid kernel where it fits and B·H² ≤ 2^26, else per step), persistent (the grid kernel wherever it fits), cluster (the sm_90 thread-block cluster kernels wherever they fit) or steps (a GEMM and a kernel per time step).",
        "auto", "persistent", "cluster", "steps");

    public static Option<string> Graph() => Choice("--graph",
        "GPU: on (record the training step once as a CUDA graph and replay it for every minibatch) or off (issue every op from the host). Same results.",
        "on", "off");

    /// <summary>The GPU options as given (the CPU ignores them), with the persistent kernels' tiling from
    /// CHARRNN_PERSISTENT_COLS (a tuning knob for gpu-check) and CHARRNN_PLAN_TIMING=off (auto without the timing: the
    /// untimed rule, the same plan on every machine), read here at the edge, not inside the backend.</summary>
    public static GpuOptions Gpu(string precision, string recurrence, string graph) => new(
        precision switch { "tf32" => Rnn.Backends.Precision.Tf32, "bf16" => Rnn.Backends.Precision.Bf16, _ => Rnn.Backends.Precision.Fp32 },
        recurrence switch { "steps" => RecurrenceMode.Steps, "persistent" => RecurrenceMode.Persistent, "cluster" => RecurrenceMode.Cluster, _ => RecurrenceMode.Auto },
        graph != "off",
        int.TryParse(Environment.GetEnvironmentVariable("CHARRNN_PERSISTENT_COLS"), out int cols) && cols > 0 ? cols : null,
        TimePlans: Environment.GetEnvironmentVariable("CHARRNN_PLAN_TIMING") is not ("off" or "0"));

    public static Option<string?> Corpus() =>
        new("--corpus") { Description = "A .zip with jaychou_lyrics.txt (or one text file), or a UTF-8 .txt (default: the shipped data/jaychou_lyrics.txt.zip)." };

    /// <summary>The --input value as an <see cref="InputMode"/> (null: the backend's default).</summary>
    public static InputMode? InputMode(string? value) => value switch
    {
        "gather" => Rnn.Backends.InputMode.Gather,
        "onehot" => Rnn.Backends.InputMode.OneHotGemm,
        _ => null,
    };
}

/// <summary>Parsing of option values that are not plain numbers ("all", "none").</summary>
internal static class OptionValues
{
    public static int? Chars(string? s)
    {
        if (s == null) return Rnn.Data.Corpus.BookCharCount;
        if (s.Equals("all", StringComparison.OrdinalIgnoreCase)) return null;
        if (int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0) return n;
        throw new CharRnnException($"--chars must be a positive whole number or 'all' (got '{s}').");
    }

    /// <summary>null = keep the preset's value; returns (set, value) where value null means no clipping.</summary>
    public static (bool Set, float? Value) Clip(string? s)
    {
        if (s == null) return (false, null);
        if (s.Equals("none", StringComparison.OrdinalIgnoreCase) || s.Equals("off", StringComparison.OrdinalIgnoreCase)) return (true, null);
        if (float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && float.IsFinite(v) && v > 0) return (true, v);
        throw new CharRnnException($"--clip must be a positive number or 'none' (got '{s}').");
    }

    /// <summary>A user's text's default prefix: its first line's first characters (up to 8, leading spaces skipped).</summary>
    public static string FirstCharacters(Rnn.Data.Corpus data)
    {
        var text = data.Vocab.Decode(data.Indices.Take(256)).TrimStart();
        var line = text.Split('\n')[0];
        var runes = (line.Length > 0 ? line : text).EnumerateRunes().Take(8).Select(r => r.ToString());
        var first = string.Concat(runes);
        return first.Length > 0 ? first : data.Vocab.Decode(data.Indices.Take(1));
    }

    /// <summary>Finds the shipped corpus: ./data, then next to the executable, then up from the current folder.</summary>
    public static string DefaultCorpus()
    {
        const string rel = "data/jaychou_lyrics.txt.zip";
        var candidates = new List<string> { Path.Combine(AppContext.BaseDirectory, rel) };
        for (var d = new DirectoryInfo(Directory.GetCurrentDirectory()); d != null; d = d.Parent)
            candidates.Add(Path.Combine(d.FullName, rel));
        return candidates.FirstOrDefault(File.Exists) ?? EmbeddedCorpus() ?? candidates[^1];
    }

    /// <summary>The copy of the corpus inside the executable, written once to the cache folder (a lone binary has no data/).</summary>
    static string? EmbeddedCorpus()
    {
        using var s = typeof(OptionValues).Assembly.GetManifestResourceStream("data.jaychou_lyrics.txt.zip");
        if (s == null) return null;
        var cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x ? x
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        var path = Path.Combine(cache, "charrnn", "data", $"jaychou_lyrics-{s.Length}.txt.zip");
        if (File.Exists(path) && new FileInfo(path).Length == s.Length) return path;
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            AtomicFile.Write(path, s.CopyTo);
            return path;
        }
        catch (CharRnnException) { return null; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
