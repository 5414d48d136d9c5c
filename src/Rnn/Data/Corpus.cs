using System.Buffers;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;

namespace CharRnn.Rnn.Data;

/// <summary>How line breaks enter the corpus: the book's spaces (d2l 6.3), or kept as '\n' (poems, code, a user's text).</summary>
public enum NewlineMode { Space, Keep }

/// <summary>
/// The book's <c>load_data_jay_lyrics</c>: read <c>jaychou_lyrics.txt</c> from the zip (or a plain UTF-8 file),
/// replace '\n' and '\r' by spaces (or keep line breaks as '\n'), keep the first N characters, build the vocabulary,
/// map to indices. The file is streamed: reading stops after N characters, and an unlimited read stops with a clear
/// error at <see cref="MaxChars"/> (a zip bomb or a huge file cannot exhaust memory).
/// </summary>
public sealed record Corpus
{
    public const string BookEntryName = "jaychou_lyrics.txt";
    public const int BookCharCount = 10000;

    /// <summary>The most characters one corpus may have (2^28: 1 GiB of indices, plus the epoch's copies of them).</summary>
    public const int MaxChars = 1 << 28;

    public required Vocabulary Vocab { get; init; }
    public required int[] Indices { get; init; }
    public required string Source { get; init; }

    /// <summary>SHA-1 of the text as trained on (after the newline rule and the --chars cut), as UTF-8, lower-case hex:
    /// what a checkpoint records so that a resume on other data is refused.</summary>
    public required string Fingerprint { get; init; }

    public int Length => Indices.Length;

    /// <summary>The --chars cut it was loaded with (null: all) and its newline rule: what a resume reloads it with.</summary>
    public int? Limit { get; init; }
    public NewlineMode Newlines { get; init; }

    /// <summary>The text as trained on (rebuilt from the indices).</summary>
    public string Text => Vocab.Decode(Indices);

    /// <summary>
    /// Loads a corpus. <paramref name="maxChars"/> null = all characters (up to <see cref="MaxChars"/>).
    /// <paramref name="vocabulary"/>: index the text with this vocabulary (fine-tuning a model trained on other text)
    /// instead of its own; a character outside it is an error naming it.
    /// </summary>
    public static Corpus Load(string path, int? maxChars = BookCharCount, NewlineMode newlines = NewlineMode.Space, Vocabulary? vocabulary = null)
    {
        if (maxChars is <= 0) throw new CharRnnException($"--chars must be a positive number or 'all' (got {maxChars}).");
        if (maxChars > MaxChars) // the cap holds for a given count too (a zip bomb with --chars 2^30 got past it)
            throw new CharRnnException($"--chars must be at most {MaxChars:N0} (got {maxChars:N0}): more characters than one run can index.");
        AtomicFile.CheckInput(path, "The corpus");
        int limit = maxChars ?? MaxChars;
        if (maxChars == null)
        {
            // 'all': count first, keeping nothing, so a text past the cap (a zip bomb: 1 GiB of one letter in 1 MB) is
            // refused at no memory cost instead of after a gigabyte or two of it was stored. A second read of the text
            // costs little beside training on up to 2^28 characters.
            long count = 0;
            bool cr = false;
            ReadRunes(path, r =>
            {
                bool skip = newlines == NewlineMode.Keep && cr && r.Value == '\n'; // \r\n is kept as one \n, as below
                cr = r.Value == '\r' && !skip;
                return skip || ++count <= MaxChars;
            });
            if (count > MaxChars) throw TooLong(path);
        }
        var codes = new List<int>(Math.Min(limit, 1 << 20));
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
        var utf8 = new byte[4];
        bool afterCr = false, truncated = false;
        ReadRunes(path, r =>
        {
            if (newlines == NewlineMode.Space)
            {
                if (r.Value is '\n' or '\r') r = new Rune(' ');
            }
            else
            {
                bool lf = r.Value == '\n', cr = r.Value == '\r';
                if (lf && afterCr) { afterCr = false; return true; } // the \n of \r\n: already counted
                afterCr = cr;
                if (cr) r = new Rune('\n');
            }
            if (codes.Count == limit)
            {
                truncated = true;
                return false;
            }
            codes.Add(r.Value);
            sha.AppendData(utf8, 0, r.EncodeToUtf8(utf8));
            return true;
        });
        if (truncated && maxChars == null) throw TooLong(path); // the file grew between the two reads
        return FromCodes(codes, path, Convert.ToHexStringLower(sha.GetHashAndReset()), vocabulary) with { Limit = maxChars, Newlines = newlines };
    }

    static CharRnnException TooLong(string path) => new(
        $"The corpus {path} has more than {MaxChars:N0} characters, more than one run can index. " +
        $"Train on its first part with --chars N (e.g. --chars {MaxChars / 2}).");

    /// <summary>A corpus from text already in memory, taken as it is (tests, generation).</summary>
    public static Corpus FromText(string text, string source = "(text)")
    {
        var codes = text.EnumerateRunes().Select(r => r.Value).ToList();
        return FromCodes(codes, source, Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(text))));
    }

    static Corpus FromCodes(List<int> codes, string source, string fingerprint, Vocabulary? vocabulary = null)
    {
        if (codes.Count == 0) throw new CharRnnException($"The corpus {source} is empty. Give a file with some UTF-8 text.");
        var seen = new HashSet<int>(codes);
        var vocab = vocabulary ?? new Vocabulary(seen.Select(c => new Rune(c)));
        var outside = seen.Where(c => !vocab.TryGetIndex(new Rune(c), out _)).Order().ToList();
        if (outside.Count > 0)
            throw new CharRnnException(
                $"The corpus {source} has {outside.Count} character(s) the model's vocabulary lacks: " +
                string.Join(" ", outside.Take(10).Select(c => $"'{char.ConvertFromUtf32(c)}' (U+{c:X4})")) + (outside.Count > 10 ? " …" : "") +
                ". A model can only be fine-tuned on text made of the characters it was trained on; start a new run instead.");
        var indices = new int[codes.Count];
        var index = new Dictionary<int, int>(vocab.Count);
        for (int i = 0; i < vocab.Count; i++) index[vocab[i].Value] = i;
        for (int i = 0; i < indices.Length; i++) indices[i] = index[codes[i]];
        return new Corpus { Vocab = vocab, Indices = indices, Source = source, Fingerprint = fingerprint };
    }

    /// <summary>The whole text of a corpus file, as read (no newline rule, no cut): for inspection and tests.</summary>
    public static string ReadText(string path)
    {
        var sb = new StringBuilder();
        ReadRunes(path, r => { sb.Append(r.ToString()); return true; });
        return sb.ToString();
    }

    /// <summary>
    /// Streams the characters of a .txt file, or of the text entry of a .zip, strictly as UTF-8 (an invalid byte, a
    /// UTF-16 file or binary data is an error naming the fix), until <paramref name="take"/> returns false.
    /// </summary>
    static void ReadRunes(string path, Func<Rune, bool> take)
    {
        if (!File.Exists(path))
            throw new CharRnnException(
                $"Corpus file not found: {path}. Pass --corpus with a .zip holding {BookEntryName} or a UTF-8 .txt file " +
                "(the repository ships data/jaychou_lyrics.txt.zip).");
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
            if (IsZip(file, path))
            {
                using var zip = new ZipArchive(file, ZipArchiveMode.Read);
                using var entry = OpenEntry(zip, path);
                Decode(entry, path, take);
            }
            else Decode(file, path, take);
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
    }

    static bool IsZip(FileStream f, string path)
    {
        if (path.EndsWith(".zip", StringComparison.OrdinalIgnoreCase)) return true;
        Span<byte> sig = stackalloc byte[4];
        int n = f.ReadAtLeast(sig, 4, throwOnEndOfStream: false);
        f.Position = 0;
        return n == 4 && sig[0] == 'P' && sig[1] == 'K' && sig[2] == 3 && sig[3] == 4;
    }

    static Stream OpenEntry(ZipArchive zip, string path)
    {
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
        return entry.Open();
    }

    static void Decode(Stream s, string path, Func<Rune, bool> take)
    {
        var buf = ArrayPool<byte>.Shared.Rent(1 << 16);
        try
        {
            int have = 0;     // bytes in buf not yet decoded
            long offset = 0;  // file offset of buf[0]
            bool first = true, end = false;
            while (!end)
            {
                int n = s.Read(buf, have, buf.Length - have);
                end = n == 0;
                have += n;
                int pos = 0;
                if (first && (have >= 4096 || end))
                {
                    first = false;
                    CheckEncoding(buf.AsSpan(0, have), path);
                    if (have >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF) pos = 3; // UTF-8 byte-order mark
                }
                if (first) continue; // the first 4 KB decide the encoding
                while (pos < have)
                {
                    var status = Rune.DecodeFromUtf8(buf.AsSpan(pos, have - pos), out var r, out int used);
                    if (status == OperationStatus.NeedMoreData && !end) break;
                    if (status != OperationStatus.Done)
                        throw new CharRnnException(
                            $"The corpus {path} is not valid UTF-8 (bad byte at offset {offset + pos}). Convert it to UTF-8 first, e.g. iconv -f GBK -t UTF-8.");
                    if (!take(r)) return;
                    pos += used;
                }
                Buffer.BlockCopy(buf, pos, buf, 0, have - pos);
                offset += pos;
                have -= pos;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buf);
        }
    }

    /// <summary>UTF-16 (with or without a byte-order mark) and binary files decode as garbage or fail far in: name them at once.</summary>
    static void CheckEncoding(ReadOnlySpan<byte> head, string path)
    {
        if (head.Length >= 2 && ((head[0] == 0xFF && head[1] == 0xFE) || (head[0] == 0xFE && head[1] == 0xFF)))
            throw new CharRnnException($"The corpus {path} is UTF-16 (it starts with a UTF-16 byte-order mark). Convert it to UTF-8 first, e.g. iconv -f UTF-16 -t UTF-8.");
        int nul = 0;
        foreach (var b in head) if (b == 0) nul++;
        if (head.Length >= 16 && nul * 10 > head.Length)
            throw new CharRnnException(
                $"The corpus {path} is not UTF-8 text: {nul} of its first {head.Length} bytes are NUL, as in UTF-16 without a byte-order mark or a binary file. " +
                "Convert it to UTF-8 first, e.g. iconv -f UTF-16LE -t UTF-8.");
    }
}
