using System.Text;
using CharRnn.Rnn;
using CharRnn.Rnn.Checkpoints;

namespace CharRnn.Tests;

/// <summary>
/// #26: <see cref="SafeTensors"/> at the edges mutation testing found unpinned — the 8-byte alignment of the data, a
/// tensor larger than the 1 Mi-value copy chunk, an empty tensor sharing its offset, the smallest header ("{}") and one
/// that fills the file, a header length one byte past the file, and each malformed entry field refused for its own
/// reason (not as a side effect of a later, different check).
/// </summary>
public class SafeTensorsEdgeTests
{
    static readonly Dictionary<string, string> NoMetadata = new();

    /// <summary>A file of the given header text (as is) and data bytes.</summary>
    static string Raw(TempDir dir, string header, int dataBytes, ulong? declaredLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var path = dir.File("raw.safetensors");
        File.WriteAllBytes(path, [.. BitConverter.GetBytes(declaredLength ?? (ulong)h.Length), .. h, .. new byte[dataBytes]]);
        return path;
    }

    static string Refusal(string path) => Assert.Throws<CharRnnException>(() => SafeTensors.Read(path))!.Message;

    [Test]
    public void TheDataStartsAtAMultipleOfEightBytes()
    {
        using var dir = new TempDir();
        // Names of every length mod 8, so the unpadded header length takes every residue.
        for (int extra = 0; extra < 8; extra++)
        {
            var path = dir.File($"a{extra}.safetensors");
            SafeTensors.Write(path, new Dictionary<string, SafeTensor> { [new string('w', 1 + extra)] = new([2], [1f, 2f]) }, NoMetadata);
            var bytes = File.ReadAllBytes(path);
            ulong n = BitConverter.ToUInt64(bytes, 0);
            Assert.That(n % 8, Is.EqualTo(0UL), $"header of {n} bytes (name of {1 + extra} characters)");
            Assert.That(bytes.Length, Is.EqualTo(8 + (long)n + 8));
            Assert.That(SafeTensors.Read(path).Tensors.Single().Value.Data, Is.EqualTo(new[] { 1f, 2f }));
        }
    }

    [Test]
    public void ATensorLargerThanOneCopyChunkRoundTrips()
    {
        using var dir = new TempDir();
        var data = new float[(1 << 20) + 5]; // the writer and reader copy 1 Mi values at a time: this one needs two, the last short
        for (int i = 0; i < data.Length; i++) data[i] = i * 0.5f;
        var path = dir.File("big.safetensors");
        SafeTensors.Write(path, new Dictionary<string, SafeTensor> { ["big"] = new([data.Length], data), ["after"] = new([1], [7f]) }, NoMetadata);
        var back = SafeTensors.Read(path).Tensors;
        Assert.That(back["big"].Data.AsSpan().SequenceEqual(data), Is.True);
        Assert.That(back["after"].Data, Is.EqualTo(new[] { 7f }));
    }

    [Test]
    public void AnEmptyTensorSharingAnOffsetRoundTrips()
    {
        using var dir = new TempDir();
        var path = dir.File("empty.safetensors");
        // The empty tensor's [0, 0] and the next one's [0, 8] begin at the same byte: ordered by end, they are contiguous.
        SafeTensors.Write(path, new Dictionary<string, SafeTensor> { ["empty"] = new([0], []), ["two"] = new([2], [3f, 4f]) }, NoMetadata);
        var back = SafeTensors.Read(path).Tensors;
        Assert.That(back["empty"].Data, Is.Empty);
        Assert.That(back["two"].Data, Is.EqualTo(new[] { 3f, 4f }));
    }

    [Test]
    public void TheSmallestHeaderFillsTheFileAndLoads()
    {
        using var dir = new TempDir();
        var (tensors, metadata) = SafeTensors.Read(Raw(dir, "{}", 0));
        Assert.That(tensors, Is.Empty);
        Assert.That(metadata, Is.Empty);
    }

    [TestCase(0, "shorter than its 8-byte header length")]
    [TestCase(7, "shorter than its 8-byte header length")]
    [TestCase(8, "its header length (0 bytes) does not fit in the file (8 bytes)")]
    public void AFileOfAFewBytesIsRefused(int length, string reason)
    {
        using var dir = new TempDir();
        var path = dir.File("short.safetensors");
        File.WriteAllBytes(path, new byte[length]);
        var message = Refusal(path);
        Assert.That(message, Does.StartWith($"{path} is not a usable safetensors file: "), "refused as unusable, not as unreadable");
        Assert.That(message, Does.Contain(reason));
    }

    [TestCase(1UL, "its header length (1 bytes) does not fit in the file (9 bytes)")]
    [TestCase(3UL, "its header length (3 bytes) does not fit in the file (10 bytes)")]
    [TestCase(1000UL, "its header length (1000 bytes) does not fit in the file (10 bytes)")]
    public void AHeaderLengthPastTheFileIsRefused(ulong declared, string reason)
    {
        using var dir = new TempDir();
        var path = declared == 1 ? Raw(dir, "{", 0, declared) : Raw(dir, "{}", 0, declared);
        var message = Refusal(path);
        Assert.That(message, Does.StartWith($"{path} is not a usable safetensors file: "));
        Assert.That(message, Does.Contain(reason));
    }

    static IEnumerable<TestCaseData> BadEntries()
    {
        static TestCaseData E(string name, string entry, int dataBytes, string reason) => new TestCaseData(entry, dataBytes, reason).SetName("Entry_" + name);
        yield return E("DtypeAsANumber", """{"dtype":32,"shape":[1],"data_offsets":[0,4]}""", 4, "'t' has no dtype");
        yield return E("NoDtype", """{"shape":[1],"data_offsets":[0,4]}""", 4, "'t' has no dtype");
        yield return E("ShapeAsANumber", """{"dtype":"F32","shape":1,"data_offsets":[0,4]}""", 4, "'t' has no shape");
        yield return E("NoShape", """{"dtype":"F32","data_offsets":[0,4]}""", 4, "'t' has no shape");
        yield return E("NegativeDimension", """{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}""", 4, "bad dimension");
        yield return E("DimensionAboveInt32", """{"dtype":"F32","shape":[2147483648],"data_offsets":[0,4]}""", 4, "bad dimension");
        yield return E("DimensionOfExactlyInt32Max", """{"dtype":"F32","shape":[2147483647],"data_offsets":[0,4]}""", 4,
            "'t' of shape [2147483647] needs 8589934588 bytes but its offsets span 4");
        yield return E("ALargestTensorPastTheData", """{"dtype":"F32","shape":[2147483647],"data_offsets":[0,8589934588]}""", 4,
            "its tensors need 8589934588 bytes of data but the file holds 4");
        yield return E("OffsetsAsANumber", """{"dtype":"F32","shape":[1],"data_offsets":4}""", 4, "no valid data_offsets");
        yield return E("OneOffset", """{"dtype":"F32","shape":[1],"data_offsets":[4]}""", 4, "no valid data_offsets");
        yield return E("ThreeOffsets", """{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}""", 4, "no valid data_offsets");
        yield return E("BeginAsAString", """{"dtype":"F32","shape":[1],"data_offsets":["0",4]}""", 4, "no valid data_offsets");
        yield return E("EndAsAString", """{"dtype":"F32","shape":[1],"data_offsets":[0,"4"]}""", 4, "no valid data_offsets");
        yield return E("FractionalBegin", """{"dtype":"F32","shape":[1],"data_offsets":[0.5,4]}""", 4, "no valid data_offsets");
        yield return E("FractionalEnd", """{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}""", 4, "no valid data_offsets");
        yield return E("NegativeBegin", """{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}""", 4, "no valid data_offsets");
        yield return E("EndBeforeBegin", """{"dtype":"F32","shape":[0],"data_offsets":[4,0]}""", 4, "no valid data_offsets");
    }

    [TestCaseSource(nameof(BadEntries))]
    public void AMalformedEntryIsRefusedForItsOwnReason(string entry, int dataBytes, string reason)
    {
        using var dir = new TempDir();
        var path = Raw(dir, "{\"t\":" + entry + "}", dataBytes);
        var message = Refusal(path);
        Assert.That(message, Does.StartWith($"{path} is not a usable safetensors file: "));
        Assert.That(message, Does.Contain(reason));
    }
}
