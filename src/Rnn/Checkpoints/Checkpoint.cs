using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;

namespace CharRnn.Rnn.Checkpoints;

/// <summary>
/// Everything needed to continue a run bit for bit, or to generate from it. Taken at epoch boundaries.
/// File layout (all little-endian):
/// <code>
///   "CHARRNN\0"                  8 bytes, magic
///   format version               int32 (this code writes and reads 1)
///   header length N              int32
///   header                       N bytes of UTF-8 JSON (<see cref="CheckpointHeader"/>)
///   tensors                      float32 arrays, in the order and shapes the header lists
///   SHA-256                      32 bytes, of everything before it
/// </code>
/// Written atomically (temp file, flush to disk, rename), so a crash never leaves a half-written checkpoint.
/// </summary>
public sealed class Checkpoint
{
    public const int FormatVersion = 1;
    static readonly byte[] Magic = "CHARRNN\0"u8.ToArray();

    /// <summary>The first bytes of every checkpoint file (the mark of a temp file a killed save left).</summary>
    public static ReadOnlySpan<byte> FileMagic => Magic;

    public required CheckpointHeader Header { get; init; }
    /// <summary>Named float32 tensors: "param/W_xh", …, "adam_m/W_xh", "adam_v/…", "state/H".</summary>
    public required IReadOnlyDictionary<string, float[]> Tensors { get; init; }

    /// <summary>The model, as the run's options define it on the checkpoint's vocabulary.</summary>
    public ModelSpec Spec => Header.Options.Spec(Header.VocabChars.EnumerateRunes().Count());

    /// <summary>What a resume of this checkpoint starts from (<see cref="RunRules"/> decides with it).</summary>
    public RunOrigin Origin => new(Header.Options, Header.CorpusPath, Header.CorpusLimit, Header.Newlines)
    {
        CorpusSha1 = Header.CorpusSha1, CorpusChars = Header.CorpusChars, VocabChars = Header.VocabChars, VocabSize = Spec.Vocab,
        Ranks = Header.Ranks, Epoch = Header.Epoch,
    };

    public RnnParameters Parameters()
    {
        var spec = Spec;
        var p = new RnnParameters(spec);
        for (int i = 0; i < spec.Parameters.Count; i++) p.Values[i] = Tensors["param/" + spec.Parameters[i].Name];
        return p;
    }

    /// <summary>
    /// The trainer's run where it stands, as a checkpoint: its state, options and corpus identity (path, fingerprint,
    /// --chars cut, newline rule), and what the caller adds — the run's history so far (for metrics and plots that
    /// continue across resumes), its checkpoint folder, and the latest validation perplexity.
    /// </summary>
    public static Checkpoint Capture(Trainer trainer, IReadOnlyList<EpochStats>? history = null, string? checkpointDir = null, double? valPerplexity = null,
        RunOutputPaths? outputs = null)
    {
        var state = trainer.CaptureState();
        var spec = trainer.Model.Spec;
        var tensors = new Dictionary<string, float[]>();
        for (int i = 0; i < spec.Parameters.Count; i++) tensors["param/" + spec.Parameters[i].Name] = state.Parameters.Values[i];
        if (state.AdamSteps > 0)
            for (int i = 0; i < spec.Parameters.Count; i++)
            {
                tensors["adam_m/" + spec.Parameters[i].Name] = state.AdamM![i];
                tensors["adam_v/" + spec.Parameters[i].Name] = state.AdamV![i];
            }
        for (int l = 0; l < spec.Layers; l++)
        {
            tensors[$"state/H{l}"] = state.H[l];
            if (state.C != null) tensors[$"state/C{l}"] = state.C[l];
        }
        var corpus = trainer.Corpus;
        return new Checkpoint
        {
            Header = new CheckpointHeader
            {
                Model = spec.Kind, Cell = spec.Cell, Layers = spec.Layers, Hidden = spec.Hidden, Activation = spec.Activation,
                VocabChars = corpus.Vocab.ToString(),
                Options = trainer.Options, Epoch = state.Epoch, DataRngState = state.DataRng, AdamSteps = state.AdamSteps,
                Minibatch = state.Minibatch, LossSum = state.LossSum, LossRows = state.LossRows,
                CorpusSha1 = corpus.Fingerprint, CorpusChars = corpus.Length, CorpusLimit = corpus.Limit,
                CorpusPath = Path.GetFullPath(corpus.Source), Newlines = corpus.Newlines,
                CheckpointDir = checkpointDir != null ? Path.GetFullPath(checkpointDir) : null,
                ValPerplexity = valPerplexity, History = history?.ToList(), Ranks = state.Ranks, Outputs = outputs,
                WrittenBy = "charrnn " + (typeof(Checkpoint).Assembly.GetName().Version?.ToString() ?? "?"),
                Backend = trainer.Model.Backend.Description, Recurrence = trainer.Driver.RecurrencePlan(), Created = DateTime.UtcNow,
            },
            Tensors = tensors,
        };
    }

    /// <summary>The run's state to continue from (<see cref="Load"/> has checked every tensor's presence and size).</summary>
    public TrainerState ToState()
    {
        var spec = Spec;
        var names = spec.Parameters.Select(p => p.Name).ToList();
        bool adam = Header.AdamSteps > 0;
        return new TrainerState
        {
            Epoch = Header.Epoch,
            Minibatch = Header.Minibatch,
            LossSum = Header.LossSum,
            LossRows = Header.LossRows,
            DataRng = Header.DataRngState,
            Parameters = Parameters(),
            AdamSteps = Header.AdamSteps,
            AdamM = adam ? names.Select(n => Tensors["adam_m/" + n]).ToArray() : null,
            AdamV = adam ? names.Select(n => Tensors["adam_v/" + n]).ToArray() : null,
            H = Enumerable.Range(0, spec.Layers).Select(l => Tensors[$"state/H{l}"]).ToArray(),
            C = Tensors.ContainsKey("state/C0") ? Enumerable.Range(0, spec.Layers).Select(l => Tensors[$"state/C{l}"]).ToArray() : null, // the cells that carry C (validated: CheckpointValidation.ExpectedTensors)
            Ranks = Header.Ranks,
        };
    }

    /// <summary>The header's JSON: source-generated (no reflection, so it works in a NativeAOT build), enums by name
    /// only (an integer could name no member).</summary>
    internal static CheckpointJson Json => CheckpointJson.Default;

    /// <summary>Float values per chunk when streaming tensors (4 MiB): bounds the buffers whatever the tensor's size.</summary>
    const int ChunkFloats = 1 << 20;

    /// <summary>Writes the checkpoint atomically, streaming every tensor in chunks through the running SHA-256.</summary>
    public void Save(string path)
    {
        AtomicFile.Write(path, stream =>
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            void Put(ReadOnlySpan<byte> bytes)
            {
                stream.Write(bytes);
                hash.AppendData(bytes);
            }
            var header = JsonSerializer.SerializeToUtf8Bytes(Header with { Tensors = Tensors.Select(kv => new TensorEntry(kv.Key, kv.Value.Length)).ToList() }, Json.CheckpointHeader);
            Put(Magic);
            Put(BitConverter.GetBytes(FormatVersion));
            Put(BitConverter.GetBytes(header.Length));
            Put(header);
            foreach (var (_, data) in Tensors)
                // Stryker disable once Equality : a last chunk at i = Length is empty
                for (int i = 0; i < data.Length; i += ChunkFloats)
                    Put(MemoryMarshal.AsBytes(data.AsSpan(i, Math.Min(ChunkFloats, data.Length - i))));
            stream.Write(hash.GetHashAndReset());
        });
    }

    /// <summary>The largest header this reader accepts (a real one is a few KB; the vocabulary dominates).</summary>
    const int MaxHeaderBytes = 64 << 20;

    /// <summary>
    /// Reads and verifies a checkpoint; every problem is a <see cref="CharRnnException"/> naming it. Bounded in time and
    /// memory by the file's size: the SHA-256 is checked first, streaming, so damage is reported as damage; then the
    /// header is validated field by field, against the others and against the file's length, before a single tensor
    /// is allocated; then the tensors are streamed in.
    /// </summary>
    public static Checkpoint Load(string path)
    {
        if (!File.Exists(path)) throw new CharRnnException($"Checkpoint not found: {path}.");
        string Bad(string what) => $"{path} {what}";
        if (!AtomicFile.IsRegularFile(path))
            throw new CharRnnException(Bad("is not a regular file (a device, pipe or socket). Pass a checkpoint file written by charrnn train --checkpoint-dir."));
        try
        {
            // Stryker disable once Bitwise : the read buffer's size changes speed, not what is read
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
            long length = fs.Length;
            var head = new byte[16];
            int got = fs.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            if (got < Magic.Length || !head.AsSpan(0, Magic.Length).SequenceEqual(Magic))
                throw new CharRnnException(Bad("is not a CharRnn checkpoint (it does not start with the CHARRNN signature). Pass a file written by charrnn train --checkpoint-dir."));
            if (length < 16 + 32)
                throw new CharRnnException(Bad($"is truncated ({length} bytes). It was not completely written; use an earlier checkpoint."));
            int version = BitConverter.ToInt32(head, 8);
            if (version > FormatVersion)
                throw new CharRnnException(Bad($"has format version {version}, newer than this charrnn understands ({FormatVersion}). Update charrnn."));
            if (version < 1) throw new CharRnnException(Bad($"has an invalid format version ({version}); the file is damaged."));
            VerifyHash(fs, length, Bad);

            int headerLength = BitConverter.ToInt32(head, 12);
            if (headerLength <= 0 || headerLength > MaxHeaderBytes || 16L + headerLength > length - 32)
                throw new CharRnnException(Bad("is truncated or damaged (its header does not fit in the file). Use an earlier checkpoint."));
            fs.Position = 16;
            var headerBytes = new byte[headerLength];
            fs.ReadExactly(headerBytes);
            CheckpointHeader header;
            try
            {
                header = JsonSerializer.Deserialize(headerBytes, Json.CheckpointHeader) ?? throw new JsonException("empty header");
            }
            catch (Exception e) when (e is JsonException or NotSupportedException or ArgumentException or InvalidOperationException or FormatException)
            {
                throw new CharRnnException(Bad($"has an unreadable header ({CollapseLines(e.Message)})."), e);
            }
            var spec = CheckpointValidation.Validate(header, length - 16 - headerLength - 32, Bad);
            var tensors = new Dictionary<string, float[]>();
            foreach (var t in header.Tensors)
            {
                var data = new float[t.Length];
                // Stryker disable once Equality : a last chunk at i = Length is empty
                for (int i = 0; i < data.Length; i += ChunkFloats)
                    fs.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan(i, Math.Min(ChunkFloats, data.Length - i))));
                // A non-finite weight, moment or state would train or generate on as if it were a number (the vectorised
                // tanh maps NaN to ±1): refused where it enters. Adam's second moments are squares: never negative.
                int bad = FirstNonFinite(data);
                if (bad >= 0)
                    throw new CharRnnException(Bad($"holds a non-finite value ({data[bad]}) in {t.Name} at {bad}; the file is damaged or the run had diverged. Use an earlier checkpoint."));
                // Stryker disable once Equality : every tensor validation lets through is one the model needs, and each has ≥ 1 value
                if (t.Name.StartsWith("adam_v/", StringComparison.Ordinal) && data.Length > 0 && System.Numerics.Tensors.TensorPrimitives.Min<float>(data) < 0f)
                    throw new CharRnnException(Bad($"holds a negative Adam second moment in {t.Name}; the file is damaged. Use an earlier checkpoint."));
                tensors[t.Name] = data;
            }
            _ = spec;
            return new Checkpoint { Header = header, Tensors = tensors };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CharRnnException($"Cannot read the checkpoint {path}: {e.Message}", e);
        }
    }

    /// <summary>The index of the first NaN or ±∞, or −1 (checkpoints and safetensors refuse them on load).</summary>
    internal static int FirstNonFinite(ReadOnlySpan<float> data)
    {
        for (int i = 0; i < data.Length; i++)
            if (!float.IsFinite(data[i])) return i;
        return -1;
    }

    static string CollapseLines(string s) => string.Join(" ", s.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));

    /// <summary>SHA-256 of everything but the last 32 bytes, streamed, against those 32 bytes.</summary>
    static void VerifyHash(FileStream fs, long length, Func<string, string> bad)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buf = new byte[1 << 20];
        fs.Position = 0;
        long left = length - 32;
        while (left > 0)
        {
            int n = fs.Read(buf, 0, (int)Math.Min(buf.Length, left));
            if (n <= 0) throw new CharRnnException(bad("is truncated: it ended while being read. Use an earlier checkpoint."));
            hash.AppendData(buf, 0, n);
            left -= n;
        }
        var stored = new byte[32];
        fs.ReadExactly(stored);
        if (!hash.GetHashAndReset().AsSpan().SequenceEqual(stored))
            throw new CharRnnException(bad("is corrupt or truncated: its SHA-256 checksum does not match its contents. Use an earlier checkpoint."));
    }
}

public sealed record TensorEntry(string Name, int Length);

/// <summary>The JSON header of a checkpoint.</summary>
public sealed record CheckpointHeader
{
    public required ModelKind Model { get; init; }
    public CellKind Cell { get; init; } = CellKind.Rnn;
    public int Layers { get; init; } = 1;
    public required int Hidden { get; init; }
    public required Activation Activation { get; init; }
    /// <summary>The vocabulary, in index order, as one string.</summary>
    public required string VocabChars { get; init; }
    public required TrainOptions Options { get; init; }
    /// <summary>Epochs completed; training resumes in the next one, after <see cref="Minibatch"/> minibatches.</summary>
    public required int Epoch { get; init; }
    /// <summary>Minibatches of the next epoch already trained (0: the checkpoint is at an epoch boundary).</summary>
    public int Minibatch { get; init; }
    /// <summary>Those minibatches' summed loss and rows (so the epoch's perplexity comes out whole on a resume).</summary>
    public double LossSum { get; init; }
    public long LossRows { get; init; }
    /// <summary>The data generator's state at the start of that epoch.</summary>
    public required ulong[] DataRngState { get; init; }
    public required int AdamSteps { get; init; }
    /// <summary>SHA-1 of the training text, so a resume on a different corpus is refused.</summary>
    public required string CorpusSha1 { get; init; }
    public required int CorpusChars { get; init; }
    /// <summary>The --chars limit the corpus was loaded with (null: all).</summary>
    public int? CorpusLimit { get; init; }
    /// <summary>Where the corpus was read from (absolute), and its newline rule: a resume reloads it so.</summary>
    public string? CorpusPath { get; init; }
    public NewlineMode Newlines { get; init; }
    /// <summary>The run's --checkpoint-dir (absolute), which a resume keeps saving to unless told otherwise.</summary>
    public string? CheckpointDir { get; init; }
    /// <summary>The latest validation perplexity when the checkpoint was taken (null: no validation yet).</summary>
    public double? ValPerplexity { get; init; }
    /// <summary>Every epoch's numbers so far: metrics and plots continue from them on a resume.</summary>
    public IReadOnlyList<EpochStats>? History { get; init; }
    /// <summary>How many data-parallel ranks trained it; a bit-exact resume needs as many.</summary>
    public int Ranks { get; init; } = 1;
    /// <summary>Where the run wrote its metrics, TensorBoard events and plot (full paths): a plain --resume continues them.</summary>
    public RunOutputPaths? Outputs { get; init; }
    public required string WrittenBy { get; init; }
    public required string Backend { get; init; }
    /// <summary>The GPU recurrence plan the run trained with ("cluster 16x8", …; null on the CPU): a resume with
    /// --recurrence auto runs it again where it can, so the run continues with the same kernels.</summary>
    public string? Recurrence { get; init; }
    public required DateTime Created { get; init; }
    public IReadOnlyList<TensorEntry> Tensors { get; init; } = [];
}

[JsonSourceGenerationOptions(WriteIndented = false, UseStringEnumConverter = true)]
/// <summary>The files a run keeps beside its checkpoints (full paths; null: not kept), and its --keep-last.</summary>
public sealed record RunOutputPaths(string? Metrics, string? TensorBoard, string? Plot, int? KeepLast = null);

[JsonSerializable(typeof(CheckpointHeader))]
internal sealed partial class CheckpointJson : JsonSerializerContext;
