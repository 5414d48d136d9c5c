using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using CharRnn.Rnn.Backends;
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

    public required CheckpointHeader Header { get; init; }
    /// <summary>Named float32 tensors: "param/W_xh", …, "adam_m/W_xh", "adam_v/…", "state/H".</summary>
    public required IReadOnlyDictionary<string, float[]> Tensors { get; init; }

    /// <summary>The model, as the run's options define it on the checkpoint's vocabulary.</summary>
    public ModelSpec Spec => Header.Options.Spec(Header.VocabChars.EnumerateRunes().Count());

    public RnnParameters Parameters()
    {
        var spec = Spec;
        var p = new RnnParameters(spec);
        for (int i = 0; i < spec.Parameters.Count; i++) p.Values[i] = Tensors["param/" + spec.Parameters[i].Name];
        return p;
    }

    /// <summary>The trainer's state at its current epoch boundary, as a checkpoint of its run.</summary>
    public static Checkpoint Capture(Trainer trainer, int? corpusLimit)
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
                CorpusSha1 = corpus.Fingerprint, CorpusChars = corpus.Length, CorpusLimit = corpusLimit,
                WrittenBy = "charrnn " + (typeof(Checkpoint).Assembly.GetName().Version?.ToString() ?? "?"),
                Backend = trainer.Model.Backend.Description, Created = DateTime.UtcNow,
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
            DataRng = Header.DataRngState,
            Parameters = Parameters(),
            AdamSteps = Header.AdamSteps,
            AdamM = adam ? names.Select(n => Tensors["adam_m/" + n]).ToArray() : null,
            AdamV = adam ? names.Select(n => Tensors["adam_v/" + n]).ToArray() : null,
            H = Enumerable.Range(0, spec.Layers).Select(l => Tensors[$"state/H{l}"]).ToArray(),
            C = spec.Cell == CellKind.Lstm ? Enumerable.Range(0, spec.Layers).Select(l => Tensors[$"state/C{l}"]).ToArray() : null,
        };
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
        for (int l = 0; l < spec.Layers; l++)
        {
            yield return ($"state/H{l}", state);
            if (spec.Cell == CellKind.Lstm) yield return ($"state/C{l}", state);
        }
    }

    static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = false,
        Converters = { new JsonStringEnumConverter() },
    };

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
            var header = JsonSerializer.SerializeToUtf8Bytes(Header with { Tensors = Tensors.Select(kv => new TensorEntry(kv.Key, kv.Value.Length)).ToList() }, Json);
            Put(Magic);
            Put(BitConverter.GetBytes(FormatVersion));
            Put(BitConverter.GetBytes(header.Length));
            Put(header);
            foreach (var (_, data) in Tensors) Put(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()));
            stream.Write(hash.GetHashAndReset());
        });
    }

    /// <summary>Reads and verifies a checkpoint; every problem is a <see cref="CharRnnException"/> naming it.</summary>
    public static Checkpoint Load(string path)
    {
        if (!File.Exists(path)) throw new CharRnnException($"Checkpoint not found: {path}.");
        byte[] all;
        try { all = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CharRnnException($"Cannot read the checkpoint {path}: {e.Message}", e);
        }
        string Bad(string what) => $"{path} {what}";
        if (all.Length < Magic.Length || !all.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            throw new CharRnnException(Bad("is not a CharRnn checkpoint (it does not start with the CHARRNN signature). Pass a file written by charrnn train --checkpoint-dir."));
        if (all.Length < Magic.Length + 8 + 32)
            throw new CharRnnException(Bad($"is truncated ({all.Length} bytes). It was not completely written; use an earlier checkpoint."));
        int version = BitConverter.ToInt32(all, 8);
        if (version > FormatVersion)
            throw new CharRnnException(Bad($"has format version {version}, newer than this charrnn understands ({FormatVersion}). Update charrnn."));
        if (version < 1) throw new CharRnnException(Bad($"has an invalid format version ({version}); the file is damaged."));
        var body = all.AsSpan(0, all.Length - 32);
        var stored = all.AsSpan(all.Length - 32);
        int headerLength = BitConverter.ToInt32(all, 12);
        if (headerLength <= 0 || 16L + headerLength > body.Length)
            throw new CharRnnException(Bad("is truncated or damaged (its header does not fit in the file). Use an earlier checkpoint."));
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(stored))
            throw new CharRnnException(Bad("is corrupt or truncated: its SHA-256 checksum does not match its contents. Use an earlier checkpoint."));
        CheckpointHeader header;
        try
        {
            header = JsonSerializer.Deserialize<CheckpointHeader>(body.Slice(16, headerLength), Json)
                     ?? throw new JsonException("empty header");
        }
        catch (JsonException e)
        {
            throw new CharRnnException(Bad($"has an unreadable header ({e.Message})."), e);
        }
        var tensors = new Dictionary<string, float[]>();
        int offset = 16 + headerLength;
        foreach (var t in header.Tensors)
        {
            long bytes = (long)t.Length * sizeof(float);
            if (t.Length < 0 || offset + bytes > body.Length)
                throw new CharRnnException(Bad($"is truncated: tensor {t.Name} does not fit."));
            var data = new float[t.Length];
            body.Slice(offset, (int)bytes).CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()));
            tensors[t.Name] = data;
            offset += (int)bytes;
        }
        if (offset != body.Length) throw new CharRnnException(Bad("has trailing data after its tensors; the file is damaged."));
        var ck = new Checkpoint { Header = header, Tensors = tensors };
        foreach (var (name, length) in ExpectedTensors(header, ck.Spec))
        {
            if (!tensors.TryGetValue(name, out var v))
                throw new CharRnnException(Bad($"lacks the tensor {name}; the file is damaged."));
            if (v.Length != length)
                throw new CharRnnException(Bad($"has {v.Length} values in {name} where the model needs {length}; the file is damaged."));
        }
        return ck;
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
    /// <summary>Epochs completed; training resumes at the next one, minibatch 0.</summary>
    public required int Epoch { get; init; }
    public required ulong[] DataRngState { get; init; }
    public required int AdamSteps { get; init; }
    /// <summary>SHA-1 of the training text, so a resume on a different corpus is refused.</summary>
    public required string CorpusSha1 { get; init; }
    public required int CorpusChars { get; init; }
    /// <summary>The --chars limit the corpus was loaded with (null: all).</summary>
    public int? CorpusLimit { get; init; }
    public required string WrittenBy { get; init; }
    public required string Backend { get; init; }
    public required DateTime Created { get; init; }
    public IReadOnlyList<TensorEntry> Tensors { get; init; } = [];
}
