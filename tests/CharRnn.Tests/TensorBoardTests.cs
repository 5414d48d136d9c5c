using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace CharRnn.Tests;

/// <summary>
/// --tensorboard writes event files a reader written from the format's description accepts: TFRecord frames whose
/// masked CRC-32Cs check (computed here with a table, independently of the writer's hardware step), a first event with
/// file_version "brain.Event:2", then one event per epoch whose scalars equal the metrics file's numbers.
/// </summary>
public class TensorBoardTests
{
    static readonly uint[] Table = Enumerable.Range(0, 256).Select(i =>
    {
        uint c = (uint)i;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0x82F63B78u ^ (c >> 1) : c >> 1; // Castagnoli, reflected
        return c;
    }).ToArray();

    static uint Crc32C(ReadOnlySpan<byte> data)
    {
        uint c = ~0u;
        foreach (var b in data) c = Table[(c ^ b) & 0xFF] ^ (c >> 8);
        return ~c;
    }

    static uint Masked(ReadOnlySpan<byte> data)
    {
        uint c = Crc32C(data);
        return unchecked(((c >> 15) | (c << 17)) + 0xa282ead8u);
    }

    [Test]
    public void Crc32CMatchesItsCheckValueAndTheWriter()
    {
        Assert.That(Crc32C("123456789"u8), Is.EqualTo(0xE3069283u), "CRC-32C's published check value");
        var data = Encoding.UTF8.GetBytes("brain.Event:2 and some more bytes to cross the 8-byte steps");
        Assert.That(Cli.TensorBoardWriter.Crc32C(data), Is.EqualTo(Crc32C(data)));
    }

    /// <summary>The fields of one protobuf message: (field, wire type, value: ulong for varint/fixed, bytes for length-delimited).</summary>
    internal static List<(int Field, int Wire, ulong Number, byte[] Bytes)> Fields(byte[] m)
    {
        var list = new List<(int, int, ulong, byte[])>();
        int i = 0;
        ulong Varint()
        {
            ulong v = 0;
            for (int shift = 0; ; shift += 7)
            {
                byte b = m[i++];
                v |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80) return v;
            }
        }
        while (i < m.Length)
        {
            ulong tag = Varint();
            int field = (int)(tag >> 3), wire = (int)(tag & 7);
            switch (wire)
            {
                case 0: list.Add((field, wire, Varint(), [])); break;
                case 1: list.Add((field, wire, BinaryPrimitives.ReadUInt64LittleEndian(m.AsSpan(i)), [])); i += 8; break;
                case 5: list.Add((field, wire, BinaryPrimitives.ReadUInt32LittleEndian(m.AsSpan(i)), [])); i += 4; break;
                case 2: int n = (int)Varint(); list.Add((field, wire, 0, m[i..(i + n)])); i += n; break;
                default: Assert.Fail($"wire type {wire}"); break;
            }
        }
        return list;
    }

    /// <summary>Every scalar event in a --tensorboard folder (all its files, in name order): step and scalars.</summary>
    internal static List<(ulong Step, Dictionary<string, float> Scalars)> Events(string dir) =>
        Directory.GetFiles(dir).Order(StringComparer.Ordinal).SelectMany(Records).Select(Fields)
            .Where(ev => ev.Any(f => f.Field == 5))
            .Select(ev => (ev.Single(f => f.Field == 2).Number,
                Fields(ev.Single(f => f.Field == 5).Bytes).Where(f => f.Field == 1).Select(v => Fields(v.Bytes))
                    .ToDictionary(v => Encoding.UTF8.GetString(v.Single(f => f.Field == 1).Bytes), v => BitConverter.Int32BitsToSingle((int)v.Single(f => f.Field == 2).Number))))
            .ToList();

    internal static List<byte[]> Records(string path)
    {
        var b = File.ReadAllBytes(path);
        var records = new List<byte[]>();
        for (int i = 0; i < b.Length;)
        {
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(i));
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(i + 8)), Is.EqualTo(Masked(b.AsSpan(i, 8))), "length CRC");
            var data = b[(i + 12)..(i + 12 + (int)n)];
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(i + 12 + (int)n)), Is.EqualTo(Masked(data)), "data CRC");
            records.Add(data);
            i += 12 + (int)n + 4;
        }
        return records;
    }

    [Test]
    public void EventFilesCarryEveryEpochsScalars()
    {
        using var dir = new TempDir();
        var (code, _, e) = CliTests.Run([.. CliTests.With(["--epochs", "3", "--val-fraction", "0.3"]), "--tensorboard", dir.File("tb"), "--metrics", dir.File("m.jsonl")]);
        Assert.That(code, Is.EqualTo(0), e);
        var file = Directory.GetFiles(dir.File("tb")).Single();
        Assert.That(Path.GetFileName(file), Does.StartWith("events.out.tfevents."));
        var records = Records(file);
        Assert.That(records, Has.Count.EqualTo(4));
        var first = Fields(records[0]);
        Assert.That(first.Single(f => f.Field == 3).Bytes, Is.EqualTo("brain.Event:2"u8.ToArray()));
        Assert.That(BitConverter.UInt64BitsToDouble(first.Single(f => f.Field == 1).Number), Is.GreaterThan(1.7e9), "wall time in seconds");
        var metrics = File.ReadAllLines(dir.File("m.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        for (int k = 1; k <= 3; k++)
        {
            var ev = Fields(records[k]);
            Assert.That(ev.Single(f => f.Field == 2).Number, Is.EqualTo((ulong)k), "step = epoch");
            var scalars = Fields(ev.Single(f => f.Field == 5).Bytes).Where(f => f.Field == 1).Select(v => Fields(v.Bytes))
                .ToDictionary(v => Encoding.UTF8.GetString(v.Single(f => f.Field == 1).Bytes), v => BitConverter.Int32BitsToSingle((int)v.Single(f => f.Field == 2).Number));
            var m = metrics[k - 1];
            Assert.That(scalars["train/perplexity"], Is.EqualTo((float)m.GetProperty("perplexity").GetDouble()));
            Assert.That(scalars["validation/perplexity"], Is.EqualTo((float)m.GetProperty("val_perplexity").GetDouble()));
            Assert.That(scalars["train/learning_rate"], Is.EqualTo(100f));
            Assert.That(scalars["train/grad_norm"], Is.EqualTo((float)m.GetProperty("grad_norm").GetDouble()));
            Assert.That(scalars["train/tokens_per_s"], Is.EqualTo((float)m.GetProperty("tokens_per_s").GetDouble()));
        }
    }

    /// <summary>A stream that takes <c>room</c> bytes and then fails like a full disk, after writing part of the block.</summary>
    sealed class FullDisk(int room) : MemoryStream
    {
        public override void Write(ReadOnlySpan<byte> buffer) => Write(buffer.ToArray(), 0, buffer.Length);

        public override void Write(byte[] buffer, int offset, int count)
        {
            int fits = (int)Math.Min(count, room - Length);
            base.Write(buffer, offset, fits);
            if (fits < count) throw new IOException("No space left on device");
        }
    }

    /// <summary>#23 case 5: a full disk mid-run is one line (it was exit 70) and the events file keeps its whole
    /// records — the half-written one is cut off — so TensorBoard still reads the epochs before.</summary>
    [Test]
    public void AFullDiskEndsInOneLineAndLeavesWholeRecords()
    {
        var disk = new FullDisk(300);
        var w = new Cli.TensorBoardWriter("events.test", disk);
        var e = Assert.Throws<Rnn.CharRnnException>(() =>
        {
            for (int epoch = 1; epoch < 100; epoch++) w.Add(new Rnn.Training.EpochStats(epoch, 100.0 / epoch, null, 0.5, 1000));
        })!;
        Assert.That(e.Message, Does.Contain("Cannot write TensorBoard events to events.test: No space left on device").And.Contain("drop --tensorboard"));
        Assert.That(disk.Length, Is.LessThan(300), "the partial record was cut off");
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("events"), disk.ToArray());
        var records = Records(dir.File("events"));
        Assert.That(records.Count, Is.GreaterThan(1), "the version record and the whole epochs before the failure");
    }
}
