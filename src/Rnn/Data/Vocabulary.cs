using System.Text;

namespace CharRnn.Rnn.Data;

/// <summary>
/// Characters (Unicode scalar values, not UTF-16 units) sorted by code point. The book's <c>list(set(...))</c>
/// order depends on PYTHONHASHSEED; sorting is deterministic and only permutes the one-hot columns.
/// </summary>
public sealed class Vocabulary
{
    readonly Rune[] _chars;
    readonly Dictionary<Rune, int> _index;

    public Vocabulary(IEnumerable<Rune> chars)
    {
        _chars = chars.Distinct().OrderBy(r => r.Value).ToArray();
        _index = new Dictionary<Rune, int>(_chars.Length);
        for (int i = 0; i < _chars.Length; i++) _index[_chars[i]] = i;
    }

    public int Count => _chars.Length;
    public Rune this[int index] => _chars[index];
    public IReadOnlyList<Rune> Chars => _chars;

    public bool TryGetIndex(Rune r, out int index) => _index.TryGetValue(r, out index);

    /// <summary>All characters as one string in vocabulary order.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        foreach (var r in _chars) sb.Append(r.ToString());
        return sb.ToString();
    }

    /// <summary>Maps text to indices, or throws naming every character that is not in the vocabulary; the message's
    /// advice is <paramref name="fix"/> when given (the caller knows what was already tried).</summary>
    public int[] Encode(string text, string what, string? fix = null)
    {
        var result = new List<int>();
        var missing = new List<string>();
        foreach (var r in text.EnumerateRunes())
        {
            if (_index.TryGetValue(r, out var i)) result.Add(i);
            else if (!missing.Contains(r.ToString())) missing.Add(r.ToString());
        }
        if (missing.Count > 0)
            throw new CharRnnException(
                $"{what} \"{text}\" contains {(missing.Count == 1 ? "a character" : "characters")} not in the corpus vocabulary: " +
                string.Join(" ", missing.Select(m => $"'{m}' (U+{char.ConvertToUtf32(m, 0):X4})")) +
                $". {fix ?? $"Use only characters that occur in the training text (vocabulary of {Count}), or train on more of the corpus (--chars all)."}");
        return result.ToArray();
    }

    public string Decode(IEnumerable<int> indices)
    {
        var sb = new StringBuilder();
        foreach (var i in indices) sb.Append(_chars[i].ToString());
        return sb.ToString();
    }
}
