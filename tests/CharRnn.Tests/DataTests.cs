using System.Security.Cryptography;
using System.Text;
using CharRnn.Rnn;
using CharRnn.Rnn.Data;

namespace CharRnn.Tests;

public class DataTests
{
    static string ZipPath => Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip");
    static readonly Golden Facts = Golden.Load("dataset_facts.json");

    static string Sha1(string s) => Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(s)));

    [Test]
    public void ShippedZipIsTheBooksFile()
    {
        var sha256 = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(ZipPath)));
        Assert.That(sha256, Is.EqualTo("3cfedd7d174111cdad5a27eaffaa6a2432a2842cf2590a03dd8a97610ea07043"));
        Assert.That(Convert.ToHexStringLower(SHA1.HashData(File.ReadAllBytes(ZipPath))), Is.EqualTo(Facts.S("zip_sha1")));
    }

    [Test]
    public void FullCorpusMatchesDatasetFacts()
    {
        var raw = Corpus.ReadText(ZipPath);
        Assert.That(Encoding.UTF8.GetByteCount(raw), Is.EqualTo(Facts.I("txt_bytes")));
        Assert.That(raw.EnumerateRunes().Count(), Is.EqualTo(Facts.I("txt_chars")));
        Assert.That(raw.Count(c => c == '\n'), Is.EqualTo(Facts.I("newlines")));
        var c = Corpus.Load(ZipPath, null);
        Assert.That(c.Length, Is.EqualTo(63282).And.EqualTo(Facts.I("corpus_chars_full")));
        Assert.That(c.Vocab.Count, Is.EqualTo(2582).And.EqualTo(Facts.I("vocab_size_full")));
        Assert.That(Sha1(c.Text), Is.EqualTo(Facts.S("corpus_full_sha1_utf8")));
        Assert.That(c.Vocab.ToString(), Is.EqualTo(Facts.S("vocab_sorted_full")));
    }

    [Test]
    public void First10000CharsMatchDatasetFacts()
    {
        var c = Corpus.Load(ZipPath);
        Assert.That(c.Length, Is.EqualTo(10000));
        Assert.That(c.Vocab.Count, Is.EqualTo(1027).And.EqualTo(Facts.I("vocab_size_first10000")));
        Assert.That(Sha1(c.Text), Is.EqualTo(Facts.S("corpus_first10000_sha1_utf8")));
        Assert.That(c.Vocab.ToString(), Is.EqualTo(Facts.S("vocab_sorted_first10000")));
        Assert.That(c.Text[..Facts.S("first_40_chars").Length], Is.EqualTo(Facts.S("first_40_chars")));
        Assert.That(c.Vocab.Decode(c.Indices), Is.EqualTo(c.Text));
    }

    [Test]
    public void VocabularyCountsScalarValuesNotUtf16Units()
    {
        var c = Corpus.FromText("a😀b😀\r\n");
        Assert.That(c.Length, Is.EqualTo(6)); // a, 😀, b, 😀, \r, \n (no cleaning in FromText)
        Assert.That(c.Vocab.Count, Is.EqualTo(5));
        Assert.That(c.Vocab[4].Value, Is.EqualTo(0x1F600));
    }

    [Test]
    public void PlainTextAndSingleEntryZipAreAccepted()
    {
        using var dir = new TempDir();
        var txt = dir.File("x.txt");
        File.WriteAllText(txt, "你好\n世界\r", new UTF8Encoding(true));
        var c = Corpus.Load(txt, null);
        Assert.That(c.Text, Is.EqualTo("你好 世界 "));
        var zip = dir.File("one.zip");
        using (var z = System.IO.Compression.ZipFile.Open(zip, System.IO.Compression.ZipArchiveMode.Create))
        using (var w = new StreamWriter(z.CreateEntry("lyrics/other.txt").Open())) w.Write("abc");
        Assert.That(Corpus.Load(zip, null).Text, Is.EqualTo("abc"));
    }

    [Test]
    public void UnknownPrefixCharactersAreNamed()
    {
        var c = Corpus.FromText("分开不");
        var e = Assert.Throws<CharRnnException>(() => c.Vocab.Encode("分开X龍", "The prefix"))!;
        Assert.That(e.Message, Does.Contain("'X'").And.Contain("'龍'").And.Contain("U+9F8D"));
    }
}

/// <summary>A temporary folder deleted at the end of the test.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "charrnn-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
}
