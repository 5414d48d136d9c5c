using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
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

    public ModelSpec Spec => new(Header.Model, Header.VocabChars.EnumerateRunes().Count(), Header.Hidden, Header.Activation, Header.Cell, Header.Layers);

    public RnnParameters Parameters()
    {
        var p = new RnnParameters(Spec);
        for (int i = 0; i < Spec.Parameters.Count; i++) p.Values[i] = Tensors["param/" + Spec.Parameters[i].Name];
        return p;
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
        foreach (var p in ck.Spec.Parameters)
            if (!tensors.TryGetValue("param/" + p.Name, out var v) || v.Length != p.Length)
                throw new CharRnnException(Bad($"lacks parameter {p.Name} of {p.Rows}×{p.Cols}; the file is damaged."));
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
    public required int Minibatch { get; init; }
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
