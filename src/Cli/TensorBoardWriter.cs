using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using CharRnn.Rnn;
using CharRnn.Rnn.Training;

namespace CharRnn.Cli;

/// <summary>
/// <c>--tensorboard DIR</c>: an <c>events.out.tfevents.*</c> file TensorBoard reads, written from the format's
/// description — TFRecord framing (u64 length, masked CRC-32C of the length, the data, masked CRC-32C of the data) around
/// <c>Event</c> protocol buffers (wall_time 1, step 2, file_version 3, summary 5 → Summary.value 1 → {tag 1,
/// simple_value 2}). The first record carries file_version "brain.Event:2"; then one event per epoch (and per report
/// with --print-every Nit, the step then being the run's minibatch) with the scalars train/perplexity,
/// validation/perplexity, train/bits_per_char, validation/bits_per_char, train/tokens_per_s, train/learning_rate and
/// train/grad_norm. Each process writes its own file (TensorBoard merges a folder's files), flushed after every event.
/// </summary>
internal sealed class TensorBoardWriter : IDisposable
{
    readonly Stream _file;
    long _good; // the length up to the last whole record: a failed write is cut back to it
    readonly bool _minibatchSteps;

    /// <param name="minibatchSteps">Steps are the run's minibatches (--print-every Nit: a point per report), not epochs.</param>
    public TensorBoardWriter(string dir, bool minibatchSteps = false)
    {
        _minibatchSteps = minibatchSteps;
        if (string.IsNullOrWhiteSpace(dir)) throw new CharRnnException("--tensorboard is empty. Name a folder (it is created if missing).");
        try
        {
            Directory.CreateDirectory(dir);
            // A second writer in the same second and process (a resume run in-process) takes the next free name.
            var stem = System.IO.Path.Combine(dir, $"events.out.tfevents.{DateTimeOffset.UtcNow.ToUnixTimeSeconds():D10}.{Environment.MachineName}.{Environment.ProcessId}");
            for (int k = 0; ; k++)
            {
                Path = k == 0 ? stem + ".charrnn" : $"{stem}.charrnn{k}"; // sorts after the first, as TensorBoard reads them
                if (File.Exists(Path)) continue;
                // Unbuffered: each record goes out in one write, so nothing is left pending for Dispose to fail on.
                _file = new FileStream(Path, FileMode.CreateNew, FileAccess.Write, FileShare.Read, bufferSize: 0);
                break;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new CharRnnException($"Cannot write TensorBoard events to {dir}: {e.Message}", e);
        }
        WriteVersion();
    }

    /// <summary>Events into <paramref name="stream"/> (a test's stream that fails like a full disk).</summary>
    internal TensorBoardWriter(string path, Stream stream)
    {
        Path = path;
        _file = stream;
        WriteVersion();
    }

    void WriteVersion()
    {
        var ev = new ProtoWriter();
        ev.Double(1, WallTime());
        ev.String(3, "brain.Event:2");
        Record(ev.ToArray());
    }

    public string Path { get; private set; } = "";

    static double WallTime() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;

    public void Add(EpochStats s)
    {
        var summary = new ProtoWriter();
        void Scalar(string tag, double? v)
        {
            if (v is not double x) return;
            var value = new ProtoWriter();
            value.String(1, tag);
            value.Float(2, (float)x);
            summary.Message(1, value);
        }
        Scalar("train/perplexity", s.Perplexity);
        Scalar("validation/perplexity", s.ValPerplexity);
        Scalar("train/bits_per_char", EpochStats.Bits(s.Perplexity));
        Scalar("validation/bits_per_char", s.ValPerplexity is double v ? EpochStats.Bits(v) : null);
        Scalar("train/tokens_per_s", s.TokensPerSecond);
        Scalar("train/learning_rate", s.LearningRate);
        Scalar("train/grad_norm", s.GradNorm);
        Scalar("train/comm_wait_ms", s.CommWaitMs);
        var ev = new ProtoWriter();
        ev.Double(1, WallTime());
        ev.Int64(2, _minibatchSteps && s.Step is long step ? step : s.Epoch);
        ev.Message(5, summary);
        Record(ev.ToArray());
    }

    /// <summary>One TFRecord (length, its masked CRC, the data, its masked CRC) in one write. If the write fails (a
    /// full disk), the file is cut back to its last whole record — TensorBoard reads what came before — and the run
    /// stops with one line instead of a crash.</summary>
    void Record(byte[] data)
    {
        var record = new byte[8 + 4 + data.Length + 4];
        BinaryPrimitives.WriteUInt64LittleEndian(record, (ulong)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(record.AsSpan(8), MaskedCrc32C(record.AsSpan(0, 8)));
        data.CopyTo(record, 12);
        BinaryPrimitives.WriteUInt32LittleEndian(record.AsSpan(12 + data.Length), MaskedCrc32C(data));
        try
        {
            _file.Write(record);
            _file.Flush();
            _good += record.Length;
        }
        catch (IOException e)
        {
            try { _file.SetLength(_good); } catch (IOException) { } // best effort: the disk may refuse even that
            throw new CharRnnException($"Cannot write TensorBoard events to {Path}: {e.Message.TrimEnd('.')}. The file keeps the epochs before; free some space, or drop --tensorboard.", e);
        }
    }

    /// <summary>CRC-32C (Castagnoli), hardware-accelerated where the CPU has it (BitOperations.Crc32C is its step).</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        uint c = ~0u;
        int i = 0;
        for (; i + 8 <= data.Length; i += 8) c = BitOperations.Crc32C(c, BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
        for (; i < data.Length; i++) c = BitOperations.Crc32C(c, data[i]);
        return ~c;
    }

    /// <summary>TFRecord's mask: rotate right by 15 and add a constant (so a CRC of a CRC is not trivially valid).</summary>
    public static uint MaskedCrc32C(ReadOnlySpan<byte> data)
    {
        uint c = Crc32C(data);
        return unchecked(((c >> 15) | (c << 17)) + 0xa282ead8u);
    }

    public void Dispose() => _file.Dispose();

    /// <summary>The few protobuf encodings an Event needs: varint, fixed64 double, fixed32 float, length-delimited.</summary>
    sealed class ProtoWriter
    {
        readonly MemoryStream _s = new();

        void Varint(ulong v)
        {
            while (v >= 0x80) { _s.WriteByte((byte)(v | 0x80)); v >>= 7; }
            _s.WriteByte((byte)v);
        }

        void Tag(int field, int wire) => Varint((ulong)(field << 3 | wire));

        public void Double(int field, double v)
        {
            Tag(field, 1);
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteDoubleLittleEndian(b, v);
            _s.Write(b);
        }

        public void Float(int field, float v)
        {
            Tag(field, 5);
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteSingleLittleEndian(b, v);
            _s.Write(b);
        }

        public void Int64(int field, long v)
        {
            Tag(field, 0);
            Varint((ulong)v);
        }

        public void Bytes(int field, ReadOnlySpan<byte> b)
        {
            Tag(field, 2);
            Varint((ulong)b.Length);
            _s.Write(b);
        }

        public void String(int field, string s) => Bytes(field, Encoding.UTF8.GetBytes(s));
        public void Message(int field, ProtoWriter m) => Bytes(field, m.ToArray());
        public byte[] ToArray() => _s.ToArray();
    }
}
