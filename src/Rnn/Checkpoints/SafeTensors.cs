using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace CharRnn.Rnn.Checkpoints;

/// <summary>One tensor of a safetensors file: row-major float32 values of a shape.</summary>
public sealed record SafeTensor(long[] Shape, float[] Data);

/// <summary>
/// The safetensors format (huggingface/safetensors), written from its specification: an 8-byte little-endian header
/// length N, N bytes of UTF-8 JSON — <c>{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, …,
/// "__metadata__": {string: string}}</c>, padded with spaces — then the raw little-endian data, offsets relative to its
/// start. Only float32 is read and written (CharRnn's parameters). Reading checks every promise the header makes —
/// dtypes, shapes against byte counts, offsets contiguous from 0 to the end with no gap, overlap or overrun — before
/// allocating, and refuses anything else with one message naming the file and the problem.
/// </summary>
public static class SafeTensors
{
    public const string MetadataKey = "__metadata__";
    const long MaxHeaderBytes = 100L << 20;

    public static void Write(string path, IReadOnlyDictionary<string, SafeTensor> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        var header = new MemoryStream();
        long offset = 0;
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            w.WriteStartObject(MetadataKey);
            foreach (var (k, v) in metadata) w.WriteString(k, v);
            w.WriteEndObject();
            foreach (var (name, t) in tensors)
            {
                w.WriteStartObject(name);
                w.WriteString("dtype", "F32");
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset += (long)t.Data.Length * sizeof(float));
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        while (header.Length % 8 != 0) header.WriteByte((byte)' '); // the reference writer aligns the data to 8 bytes
        AtomicFile.Write(path, s =>
        {
            Span<byte> n = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(n, (ulong)header.Length);
            s.Write(n);
            header.Position = 0;
            header.CopyTo(s);
            foreach (var t in tensors.Values)
                // Stryker disable once Equality : a last chunk at i = Length is empty
                for (int i = 0; i < t.Data.Length; i += 1 << 20)
                    s.Write(MemoryMarshal.AsBytes(t.Data.AsSpan(i, Math.Min(1 << 20, t.Data.Length - i))));
        });
    }

    /// <summary>Reads and checks a safetensors file of float32 tensors: (tensors by name, metadata).</summary>
    /// <param name="beforeData">Checks the tensors' names and shapes and the metadata once the header and the data's
    /// layout are known to be sound, before a byte of data is read.</param>
    /// <param name="accept">When given, the tensor names the caller can use: any other is refused from the header,
    /// before a byte of data is read (a small sparse file may declare gigabytes).</param>
    public static (Dictionary<string, SafeTensor> Tensors, Dictionary<string, string> Metadata) Read(string path,
        Func<string, bool>? accept = null, string acceptWhat = "",
        Action<IReadOnlyDictionary<string, long[]>, IReadOnlyDictionary<string, string>>? beforeData = null)
    {
        string Bad(string what) => $"{path} is not a usable safetensors file: {what}";
        if (!File.Exists(path)) throw new CharRnnException($"Model file not found: {path}.");
        if (!AtomicFile.IsRegularFile(path)) throw new CharRnnException($"{path} is not a regular file. Pass a .safetensors file.");
        try
        {
            // Stryker disable once Bitwise : the read buffer's size changes speed, not what is read
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
            long length = fs.Length;
            Span<byte> n8 = stackalloc byte[8];
            if (length < 8) throw new CharRnnException(Bad("it is shorter than its 8-byte header length."));
            // Stryker disable once all : the file holds at least 8 bytes here, so the read returns 8 (a guard against a file shrinking under us)
            if (fs.ReadAtLeast(n8, 8, throwOnEndOfStream: false) < 8) throw new CharRnnException(Bad("it is shorter than its 8-byte header length."));
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(n8);
            if (n < 2 || n > (ulong)Math.Min(MaxHeaderBytes, length - 8))
                throw new CharRnnException(Bad($"its header length ({n} bytes) does not fit in the file ({length} bytes)."));
            var headerBytes = new byte[(int)n];
            fs.ReadExactly(headerBytes);
            long dataLength = length - 8 - (long)n;
            var entries = new List<(string Name, long[] Shape, long Begin, long End)>();
            var metadata = new Dictionary<string, string>();
            JsonDocument doc;
            try { doc = JsonDocument.Parse(headerBytes.AsMemory().TrimEnd((byte)' ')); }
            catch (JsonException e) { throw new CharRnnException(Bad($"its header is not JSON ({e.Message})."), e); }
            using (doc)
            try
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new CharRnnException(Bad("its header is not a JSON object."));
                var seen = new HashSet<string>();
                foreach (var p in doc.RootElement.EnumerateObject())
                {
                    if (!seen.Add(p.Name)) throw new CharRnnException(Bad($"its header names '{p.Name}' twice."));
                    if (p.Name == MetadataKey)
                    {
                        if (p.Value.ValueKind != JsonValueKind.Object) throw new CharRnnException(Bad("__metadata__ is not an object."));
                        foreach (var m in p.Value.EnumerateObject())
                        {
                            if (m.Value.ValueKind != JsonValueKind.String) throw new CharRnnException(Bad($"__metadata__ value '{m.Name}' is not a string."));
                            if (!metadata.TryAdd(m.Name, m.Value.GetString()!)) throw new CharRnnException(Bad($"__metadata__ names '{m.Name}' twice."));
                        }
                        continue;
                    }
                    entries.Add(Entry(p, Bad));
                }
            }
            catch (InvalidOperationException e) // a name or value that is not text: invalid UTF-8, a lone surrogate escape
            {
                throw new CharRnnException(Bad($"its header holds a name or value that is not valid Unicode text ({e.Message.TrimEnd('.')})."), e);
            }
            if (accept != null && entries.FirstOrDefault(e => !accept(e.Name)) is { Name: not null } unknown) // before any data is read
                throw new CharRnnException(Bad($"it has a tensor CharRnn does not know, {unknown.Name} ({acceptWhat}); nothing was read."));
            long at = 0;
            foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
            {
                if (e.Begin != at)
                    throw new CharRnnException(Bad(e.Begin > at ? $"the data has a gap before '{e.Name}' (bytes {at}–{e.Begin})." : $"'{e.Name}' overlaps the tensor before it."));
                at = e.End;
            }
            if (at != dataLength)
                throw new CharRnnException(Bad(at > dataLength ? $"its tensors need {at} bytes of data but the file holds {dataLength} (truncated?)." : $"{dataLength - at} bytes of data follow the last tensor."));
            // The caller's check of the names, shapes and metadata, while nothing but the header has been read.
            beforeData?.Invoke(entries.ToDictionary(e => e.Name, e => e.Shape), metadata);
            var tensors = new Dictionary<string, SafeTensor>();
            foreach (var e in entries)
            {
                var data = new float[(e.End - e.Begin) / sizeof(float)];
                fs.Position = 8 + (long)n + e.Begin;
                // Stryker disable once Equality : a last chunk at i = Length is empty
                for (int i = 0; i < data.Length; i += 1 << 20)
                    fs.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan(i, Math.Min(1 << 20, data.Length - i))));
                if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts");
                if (Checkpoint.FirstNonFinite(data) is int bad and >= 0)
                    throw new CharRnnException(Bad($"'{e.Name}' holds a non-finite value ({data[bad]}) at {bad}: the model had diverged or the file is damaged."));
                tensors[e.Name] = new SafeTensor(e.Shape, data);
            }
            return (tensors, metadata);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CharRnnException($"Cannot read {path}: {e.Message}", e);
        }
    }

    static (string Name, long[] Shape, long Begin, long End) Entry(JsonProperty p, Func<string, string> bad)
    {
        var v = p.Value;
        if (v.ValueKind != JsonValueKind.Object) throw new CharRnnException(bad($"'{p.Name}' is not an object."));
        if (!v.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String)
            throw new CharRnnException(bad($"'{p.Name}' has no dtype."));
        if (dtype.GetString() != "F32")
            throw new CharRnnException(bad($"'{p.Name}' is {dtype.GetString()}, and CharRnn reads float32 (F32) models only; convert it to float32 first."));
        if (!v.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array)
            throw new CharRnnException(bad($"'{p.Name}' has no shape."));
        var shape = new List<long>();
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var x) || x < 0 || x > int.MaxValue)
                throw new CharRnnException(bad($"'{p.Name}' has a bad dimension in its shape."));
            shape.Add(x);
        }
        if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2
            || off[0].ValueKind != JsonValueKind.Number || off[1].ValueKind != JsonValueKind.Number
            || !off[0].TryGetInt64(out var begin) || !off[1].TryGetInt64(out var end) || begin < 0 || end < begin)
            throw new CharRnnException(bad($"'{p.Name}' has no valid data_offsets [begin, end]."));
        Int128 count = 1;
        foreach (var d in shape) count *= d;
        if (count > int.MaxValue || count * sizeof(float) != end - begin)
            throw new CharRnnException(bad($"'{p.Name}' of shape [{string.Join(", ", shape)}] needs {count * sizeof(float)} bytes but its offsets span {end - begin}."));
        return (p.Name, shape.ToArray(), begin, end);
    }
}
