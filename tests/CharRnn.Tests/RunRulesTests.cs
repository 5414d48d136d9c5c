using CharRnn.Rnn;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Training;

namespace CharRnn.Tests;

/// <summary>
/// #22: the rules of where a run starts — which text, how much of it, which newline rule, which options — live in
/// <see cref="RunRules"/> (the CLI only finds files). Each row of the corpus rule at once, and the option rules that
/// depend on the text being the user's own; the CLI tests run the same rules end to end.
/// </summary>
public class RunRulesTests
{
    static readonly RunOrigin Resumed = new(TrainOptions.Preset("gru-scratch"), "/data/resumed.txt", 5000, NewlineMode.Keep);
    static readonly RunOrigin FineTuned = new(TrainOptions.Preset("concise"), "/data/tuned.txt", 7000, NewlineMode.Space);
    static readonly RunOrigin Imported = new(TrainOptions.Preset("concise"), null, null, NewlineMode.Space);

    static CorpusChoice Choose(string? corpus = null, (bool, int?) chars = default, NewlineMode? nl = null, RunOrigin? resumed = null, RunOrigin? init = null) =>
        RunRules.Corpus(corpus, chars, nl, resumed, init, p => "found:" + p, () => "shipped");

    [Test]
    public void TheCorpusRule()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Choose(), Is.EqualTo(new CorpusChoice("shipped", Corpus.BookCharCount, NewlineMode.Space, false)), "the book's run");
            Assert.That(Choose("mine.txt"), Is.EqualTo(new CorpusChoice("mine.txt", null, NewlineMode.Keep, true)), "a user's text: whole, lines kept");
            Assert.That(Choose(resumed: Resumed), Is.EqualTo(new CorpusChoice("/data/resumed.txt", 5000, NewlineMode.Keep, false)), "a resume reloads its text");
            Assert.That(Choose(init: FineTuned), Is.EqualTo(new CorpusChoice("found:/data/tuned.txt", 7000, NewlineMode.Space, false)), "a fine-tune: its model's text");
            Assert.That(Choose(init: Imported), Is.EqualTo(new CorpusChoice("shipped", Corpus.BookCharCount, NewlineMode.Space, false)), "an imported model knows no text");
            Assert.That(Choose("mine.txt", init: FineTuned), Is.EqualTo(new CorpusChoice("mine.txt", null, NewlineMode.Keep, true)), "--corpus wins over the model's text");
            Assert.That(Choose(chars: (true, null), nl: NewlineMode.Keep), Is.EqualTo(new CorpusChoice("shipped", null, NewlineMode.Keep, false)), "--chars all, --newlines keep");
            Assert.That(Choose(chars: (true, 300), resumed: Resumed).MaxChars, Is.EqualTo(300), "a given --chars overrides the checkpoint's");
        });
    }

    [Test]
    public void TheInitTextIsLookedForOnlyWhenItIsUsed()
    {
        int looked = 0;
        RunRules.Corpus("mine.txt", default, null, null, FineTuned, p => { looked++; return p; }, () => "shipped");
        RunRules.Corpus(null, default, null, null, Imported, p => { looked++; return p; }, () => "shipped");
        Assert.That(looked, Is.Zero);
        Assert.That(() => RunRules.Corpus(null, default, null, null, FineTuned, p => throw new CharRnnException("gone: " + p), () => "shipped"),
            Throws.TypeOf<CharRnnException>().With.Message.EqualTo("gone: /data/tuned.txt"));
    }

    [Test]
    public void AUsersTextTakesCharRnnsRecipeAndItsOwnFirstCharacters()
    {
        var o = RunRules.Options(new TrainOverrides(), null, null, ownText: true, () => "Once");
        Assert.That((o.PresetName, o.Prefixes), Is.EqualTo((TrainOptions.CharRnnPreset, (IReadOnlyList<string>)["Once"])).Using(new PresetAndPrefixes()));
        var named = RunRules.Options(new TrainOverrides { Preset = "concise", Prefixes = ["x"] }, null, null, ownText: true, () => throw new InvalidOperationException("not asked"));
        Assert.That((named.PresetName, named.Prefixes[0]), Is.EqualTo(("concise", "x")));
        var book = RunRules.Options(new TrainOverrides(), null, null, ownText: false, () => throw new InvalidOperationException("not asked"));
        Assert.That(book.PresetName, Is.Null, "the book's scratch-random");
    }

    [Test]
    public void AResumeNeedsItsOwnTextVocabularyRanksAndEpochsLeft()
    {
        var data = Corpus.FromText("abcabcabd");
        var ok = new RunOrigin(TrainOptions.Preset("scratch-random") with { Epochs = 10 }, "t", null, NewlineMode.Keep)
            { CorpusSha1 = data.Fingerprint, VocabChars = data.Vocab.ToString(), VocabSize = data.Vocab.Count, Ranks = 1, Epoch = 4 };
        Assert.Multiple(() =>
        {
            Assert.That(() => RunRules.CheckResumedData(ok, data, "t", 1), Throws.Nothing);
            Assert.That(() => RunRules.CheckResumedData(ok with { CorpusSha1 = "0" }, data, "t", 1), Throws.TypeOf<CharRnnException>().With.Message.Contains("differs from the one the checkpoint was trained on"));
            Assert.That(() => RunRules.CheckResumedData(ok with { VocabChars = "dcba" }, data, "t", 1), Throws.TypeOf<CharRnnException>().With.Message.Contains("the checkpoint is damaged"));
            Assert.That(() => RunRules.CheckResumedData(ok, data, "t", 2), Throws.TypeOf<CharRnnException>().With.Message.Contains("mpiexec -n 1"));
            Assert.That(RunRules.Options(new TrainOverrides(), ok, null, false, () => "").Epochs, Is.EqualTo(10));
            Assert.That(() => RunRules.Options(new TrainOverrides { Epochs = 4 }, ok, null, false, () => ""),
                Throws.TypeOf<CharRnnException>().With.Message.StartsWith("The checkpoint has already trained 4 epochs;"));
            Assert.That(() => RunRules.Options(new TrainOverrides { Batch = 0 }, null, null, false, () => ""), Throws.TypeOf<AlikeOnEveryRankException>());
        });
    }

    sealed class PresetAndPrefixes : IEqualityComparer<(string?, IReadOnlyList<string>)>
    {
        public bool Equals((string?, IReadOnlyList<string>) a, (string?, IReadOnlyList<string>) b) => a.Item1 == b.Item1 && a.Item2.SequenceEqual(b.Item2);
        public int GetHashCode((string?, IReadOnlyList<string>) x) => 0;
    }
}
