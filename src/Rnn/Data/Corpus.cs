using System.IO.Compression;
using System.Text;

namespace CharRnn.Rnn.Data;

/// <summary>
/// The book's <c>load_data_jay_lyrics</c>: read <c>jaychou_lyrics.txt</c> from the zip (or a plain UTF-8 file),
/// replace '\n' and '\r' by spaces, keep the first N characters, build the vocabulary, map to indices.
/// </summary>
public sealed class Corpus
{
    public const string BookEntryName = "jaychou_lyrics.txt";
    public const int BookCharCount = 10000;

    public required string Text { get; init; }
    public required Vocabulary Vocab { get; init; }
    public required int[] Indices { get; init; }
    public required string Source { get; init; }

    public int Length => Indices.Length;

    /// <summary>SHA-1 of the text as trained on (after the newline replacement and the --chars cut), lower-case hex:
    /// what a checkpoint records so that a resume on other data is refused.</summary>
    public string Fingerprint => Convert.ToHexStringLower(System.Security.Cryptography.SHA1.HashData(Encoding.UTF8.GetBytes(Text)));

    /// <summary>Loads a corpus. <paramref name="maxChars"/> null = all characters.</summary>
    public static Corpus Load(string path, int? maxChars = BookCharCount)
    {
        if (maxChars is <= 0) throw new CharRnnException($"--chars must be a positive number or 'all' (got {maxChars}).");
        var raw = ReadText(path);
        var cleaned = raw.Replace('\n', ' ').Replace('\r', ' ');
        var runes = cleaned.EnumerateRunes().ToList();
        if (maxChars is int n && runes.Count > n) runes = runes.GetRange(0, n);
        var sb = new StringBuilder();
        foreach (var r in runes) sb.Append(r.ToString());
        return FromRunes(runes, sb.ToString(), path);
    }

    /// <summary>A corpus from text already in memory (tests, generation).</summary>
    public static Corpus FromText(string text, string source = "(text)")
    {
        var runes = text.EnumerateRunes().ToList();
        return FromRunes(runes, text, source);
    }

    static Corpus FromRunes(List<Rune> runes, string text, string source)
    {
        if (runes.Count == 0) throw new CharRnnException($"The corpus {source} is empty. Give a file with some UTF-8 text.");
        var vocab = new Vocabulary(runes);
        var indices = new int[runes.Count];
        for (int i = 0; i < runes.Count; i++) vocab.TryGetIndex(runes[i], out indices[i]);
        return new Corpus { Text = text, Vocab = vocab, Indices = indices, Source = source };
    }

    /// <summary>Reads UTF-8 text from a .txt file or from the text entry of a .zip, strictly (invalid UTF-8 is an error).</summary>
    public static string ReadText(string path)
    {
        if (!File.Exists(path))
            throw new CharRnnException(
                $"Corpus file not found: {path}. Pass --corpus with a .zip holding {BookEntryName} or a UTF-8 .txt file " +
                "(the repository ships data/jaychou_lyrics.txt.zip).");
        byte[] bytes;
        try
        {
            bytes = IsZip(path) ? ReadZipEntry(path) : File.ReadAllBytes(path);
        }
        catch (InvalidDataException e)
        {
            throw new CharRnnException($"The corpus {path} is not a readable zip file ({e.Message}). Re-download it or pass a UTF-8 .txt file.", e);
        }
        catch (IOException e)
        {
            throw new CharRnnException($"Cannot read the corpus {path}: {e.Message}", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new CharRnnException($"Cannot read the corpus {path}: permission denied. Check the file's permissions.", e);
        }
        return DecodeUtf8(bytes, path);
    }

    static bool IsZip(string path)
    {
        if (path.EndsWith(".zip", StringComparison.OrdinalIgnoreCase)) return true;
        using var f = File.OpenRead(path);
        Span<byte> sig = stackalloc byte[4];
        return f.Read(sig) == 4 && sig[0] == 'P' && sig[1] == 'K' && sig[2] == 3 && sig[3] == 4;
    }

    static byte[] ReadZipEntry(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        var entry = zip.GetEntry(BookEntryName);
        if (entry == null)
        {
            var files = zip.Entries.Where(e => !e.FullName.EndsWith('/')).ToList();
            if (files.Count != 1)
                throw new CharRnnException(
                    $"The zip {path} has no entry {BookEntryName} and {files.Count} other files" +
                    (files.Count > 0 ? $" ({string.Join(", ", files.Take(5).Select(e => e.FullName))})" : "") +
                    $". Give a zip with {BookEntryName} or with exactly one text file.");
            entry = files[0];
        }
        using var s = entry.Open();
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    static string DecodeUtf8(byte[] bytes, string path)
    {
        var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        try
        {
            int start = bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0;
            return utf8.GetString(bytes, start, bytes.Length - start);
        }
        catch (DecoderFallbackException e)
        {
            throw new CharRnnException(
                $"The corpus {path} is not valid UTF-8 (bad byte at offset {e.Index}). Convert it to UTF-8 first, e.g. iconv -f GBK -t UTF-8.", e);
        }
    }
}
