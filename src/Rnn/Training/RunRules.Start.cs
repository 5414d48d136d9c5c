using CharRnn.Rnn.Data;

namespace CharRnn.Rnn.Training;

/// <summary>
/// What a run starts from besides the command line: the checkpoint it resumes (<c>--resume</c>) or the trained model it
/// fine-tunes (<c>--init-from</c>). The checkpoint formats fill it in (<c>Checkpoint.Origin</c>, <c>PortableModel.Origin</c>);
/// <see cref="RunRules"/> decides from it.
/// </summary>
public sealed record RunOrigin(TrainOptions Options, string? CorpusPath, int? CorpusLimit, NewlineMode Newlines)
{
    /// <summary>A resume's: the text's SHA-1 and length, its vocabulary (in index order) and size, the ranks that trained
    /// it and the epochs done.</summary>
    public string? CorpusSha1 { get; init; }
    public int CorpusChars { get; init; }
    public string? VocabChars { get; init; }
    public int VocabSize { get; init; }
    public int Ranks { get; init; } = 1;
    public int Epoch { get; init; }
}

/// <summary>The text a run trains on: where, how much of it (null: all), its newline rule, and whether the user named it.</summary>
public readonly record struct CorpusChoice(string Path, int? MaxChars, NewlineMode Newlines, bool OwnText);

public static partial class RunRules
{
    /// <summary>A run continues one run or starts from one model, not both.</summary>
    public static void CheckOneOrigin(bool resume, bool initFrom)
    {
        if (resume && initFrom)
            throw new CharRnnException("--resume continues a run, --init-from starts a new one from its weights: give one of them.");
    }

    /// <summary>
    /// The corpus: a user's text (<paramref name="corpus"/>) trains whole and keeps its lines; the shipped one is the
    /// book's 10 000 characters; a resume reloads what its checkpoint names. --init-from without --corpus fine-tunes on
    /// the text its model trained on (<paramref name="initText"/> finds it, or fails naming it); a model that knows no
    /// text takes the shipped one. A given --chars (<paramref name="chars"/>: its value, null for 'all') and --newlines
    /// override.
    /// </summary>
    public static CorpusChoice Corpus(string? corpus, (bool Given, int? Value) chars, NewlineMode? newlines, RunOrigin? resumed,
        RunOrigin? init, Func<string, string> initText, Func<string> shipped)
    {
        var fromInit = corpus == null && init?.CorpusPath is string ic ? initText(ic) : null;
        var path = corpus ?? resumed?.CorpusPath ?? fromInit ?? shipped();
        bool own = corpus != null; // (a resume reloads whatever its checkpoint names)
        int? max = chars.Given ? chars.Value : resumed != null ? resumed.CorpusLimit
            : fromInit != null ? init!.CorpusLimit : own ? null : Data.Corpus.BookCharCount;
        var nl = newlines ?? resumed?.Newlines ?? (fromInit != null ? init!.Newlines : own ? NewlineMode.Keep : NewlineMode.Space);
        return new CorpusChoice(path, max, nl, own);
    }

    /// <summary>A resume trains on its own text, with its own vocabulary, with as many ranks as wrote it.</summary>
    public static void CheckResumedData(RunOrigin resumed, Corpus data, string corpusPath, int ranks)
    {
        if (data.Fingerprint != resumed.CorpusSha1)
            throw new CharRnnException($"The corpus {corpusPath} differs from the one the checkpoint was trained on ({resumed.CorpusChars} characters from {resumed.CorpusPath ?? "its --corpus"}). " +
                                       "Resume on the same text; --init-from starts a new run from the weights on another.");
        if (resumed.VocabChars != data.Vocab.ToString()) // same text, so a vocabulary that differs was edited
            throw new CharRnnException($"The checkpoint's vocabulary ({resumed.VocabSize} characters) is not its corpus's ({data.Vocab.Count}), " +
                                       "though the corpus is the same text: the checkpoint is damaged. Resume from an earlier checkpoint.");
        if (resumed.Ranks != ranks)
            throw new CharRnnException($"The checkpoint was written by a run of {resumed.Ranks} rank(s); resume it with as many (mpiexec -n {resumed.Ranks}), or --init-from it for a new run.");
    }

    /// <summary>
    /// The run's options: a resume's (<see cref="Resume"/>), a fine-tune's (<see cref="FineTune"/>) or a fresh run's
    /// (<see cref="Fresh"/>). On a user's own text predictions start from its first characters (<paramref name="firstCharacters"/>)
    /// unless --prefix says otherwise, and a fresh run takes char-rnn's recipe unless a preset is named. Options that
    /// are wrong from the command line alone are wrong alike on every rank; a resume must have epochs left to train.
    /// </summary>
    public static TrainOptions Options(TrainOverrides given, RunOrigin? resumed, RunOrigin? init, bool ownText, Func<string> firstCharacters)
    {
        TrainOptions o;
        if (resumed != null) o = Resume(resumed.Options, given);
        else
        {
            if (ownText && given.Prefixes is not { Count: > 0 }) given = given with { Prefixes = [firstCharacters()] };
            if (ownText && init == null && given.Preset == null) given = given with { Preset = TrainOptions.CharRnnPreset };
            o = init != null ? FineTune(init.Options, given) : Fresh(given);
        }
        try { o.Validate(); }
        catch (CharRnnException e) { throw new AlikeOnEveryRankException(e.Message); }
        if (resumed != null && o.Epochs <= resumed.Epoch)
            throw new CharRnnException($"The checkpoint has already trained {resumed.Epoch} epochs{(resumed.Epoch == resumed.Options.Epochs ? ", all its run asked for" : "")}; pass --epochs with a larger total to continue.");
        return o;
    }
}
