using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;

namespace CharRnn.Cli;

internal static class TrainCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var preset = new Option<string>("--preset")
        {
            Description = "scratch-random (book 6.4, default), scratch-consecutive (6.4 with consecutive sampling), " +
                          "concise (6.5: nn.RNN + Linear, Adam lr 1e-3, consecutive sampling). The book's concise trainer " +
                          "never clips (its clipping loop consumes a generator), so this preset does not clip either; " +
                          "pass --clip 0.01 to clip for real.",
            DefaultValueFactory = _ => "scratch-random",
        };
        preset.AcceptOnlyFromAmong(TrainOptions.PresetNames);
        var epochs = new Option<int?>("--epochs") { Description = "Number of epochs (book: 250)." };
        var steps = new Option<int?>("--steps") { Description = "Time steps T per minibatch (book: 35)." };
        var batch = new Option<int?>("--batch") { Description = "Minibatch size B (book: 32)." };
        var hidden = new Option<int?>("--hidden") { Description = "Hidden units H (book: 256)." };
        var lr = new Option<float?>("--lr") { Description = "Learning rate (book: 100 for SGD, 1e-3 for Adam)." };
        var clip = new Option<string?>("--clip") { Description = "Global-norm clipping threshold θ, or 'none' (book: 0.01; concise preset: none, as the book)." };
        var sampling = new Option<string?>("--sampling") { Description = "random or consecutive minibatches." };
        sampling.AcceptOnlyFromAmong("random", "consecutive");
        var optimizer = new Option<string?>("--optimizer") { Description = "sgd or adam." };
        optimizer.AcceptOnlyFromAmong("sgd", "adam");
        var predPeriod = new Option<int?>("--pred-period") { Description = "Print perplexity and predictions every N epochs (book: 50)." };
        var predLen = new Option<int?>("--pred-len") { Description = "Characters to predict after each prefix (book: 50)." };
        var prefix = new Option<string[]>("--prefix") { Description = "Prefix to predict from; repeatable (book: 分开, 不分开).", AllowMultipleArgumentsPerToken = false };
        var chars = new Option<string?>("--chars") { Description = "Use the first N characters of the corpus, or 'all' (book: 10000)." };
        var seed = new Option<ulong?>("--seed") { Description = "Random seed for initialisation and sampling (default 0)." };
        var corpus = new Option<string?>("--corpus") { Description = "A .zip with jaychou_lyrics.txt (or one text file), or a UTF-8 .txt (default: the shipped data/jaychou_lyrics.txt.zip)." };
        var device = new Option<string>("--device") { Description = "auto (GPU if usable, else CPU), cpu, cuda or cuda:N.", DefaultValueFactory = _ => "auto" };
        var input = new Option<string?>("--input") { Description = "How onehot(X)·W_xh is computed: gather (CPU default) or onehot (one-hot scatter + GEMM, GPU default). Equal results." };
        input.AcceptOnlyFromAmong("gather", "onehot");
        var blas = new Option<string?>("--blas") { Description = "CPU GEMM engine: openblas (default when libopenblas.so.0 loads) or managed." };
        blas.AcceptOnlyFromAmong("openblas", "managed");
        var activation = new Option<string?>("--activation") { Description = "tanh (book) or relu." };
        activation.AcceptOnlyFromAmong("tanh", "relu");

        var cmd = new Command("train", "Train a char-RNN on the Jay Chou lyrics (or your corpus) and print the book's log.");
        foreach (var o in new Option[] { preset, epochs, steps, batch, hidden, lr, clip, sampling, optimizer, predPeriod, predLen,
                     prefix, chars, seed, corpus, device, input, blas, activation })
            cmd.Options.Add(o);

        cmd.SetAction(pr => Program.Guard(stderr, () =>
        {
            var o = TrainOptions.Preset(pr.GetValue(preset)!);
            var (clipSet, clipValue) = OptionValues.Clip(pr.GetValue(clip));
            var prefixes = pr.GetValue(prefix);
            o = o with
            {
                Epochs = pr.GetValue(epochs) ?? o.Epochs,
                Steps = pr.GetValue(steps) ?? o.Steps,
                Batch = pr.GetValue(batch) ?? o.Batch,
                Hidden = pr.GetValue(hidden) ?? o.Hidden,
                LearningRate = pr.GetValue(lr) ?? o.LearningRate,
                Clip = clipSet ? clipValue : o.Clip,
                Sampling = pr.GetValue(sampling) switch { "random" => SamplingKind.Random, "consecutive" => SamplingKind.Consecutive, _ => o.Sampling },
                Optimizer = pr.GetValue(optimizer) switch { "sgd" => OptimizerKind.Sgd, "adam" => OptimizerKind.Adam, _ => o.Optimizer },
                PredPeriod = pr.GetValue(predPeriod) ?? o.PredPeriod,
                PredLen = pr.GetValue(predLen) ?? o.PredLen,
                Prefixes = prefixes is { Length: > 0 } ? prefixes : o.Prefixes,
                Seed = pr.GetValue(seed) ?? o.Seed,
                Input = pr.GetValue(input) switch { "gather" => InputMode.Gather, "onehot" => InputMode.OneHotGemm, _ => o.Input },
                Activation = pr.GetValue(activation) == "relu" ? Activation.Relu : o.Activation,
            };
            o.Validate();
            var maxChars = OptionValues.Chars(pr.GetValue(chars));
            var corpusPath = pr.GetValue(corpus) ?? OptionValues.DefaultCorpus();
            var data = Corpus.Load(corpusPath, maxChars);
            using var backend = BackendFactory.Create(pr.GetValue(device)!, pr.GetValue(blas), stderr);
            return Train(o, data, backend, stdout, stderr);
        }));
        return cmd;
    }

    static int Train(TrainOptions o, Corpus data, IBackend backend, TextWriter stdout, TextWriter stderr)
    {
        using var trainer = new Trainer(backend, data, o);
        stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"charrnn: {o.Model.ToString().ToLowerInvariant()} RNN, {o.Sampling.ToString().ToLowerInvariant()} sampling, " +
            $"{o.Optimizer.ToString().ToLowerInvariant()} lr {o.LearningRate}, clip {(o.Clip is float c ? c.ToString(CultureInfo.InvariantCulture) : "none")}, " +
            $"H {o.Hidden}, B {o.Batch}, T {o.Steps}, {o.Epochs} epochs; corpus {data.Length} chars, vocab {data.Vocab.Count}, " +
            $"{trainer.EpochSize} minibatches/epoch; on {backend.Description}, input {trainer.Driver.Input.ToString().ToLowerInvariant()}"));
        var total = Stopwatch.StartNew();
        trainer.Train(r =>
        {
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"epoch {r.Epoch}, perplexity {r.Perplexity:F6}, time {r.Seconds:F2} sec"));
            foreach (var p in r.Predictions) stdout.WriteLine($" - {p}");
            stdout.Flush();
        });
        backend.Synchronize();
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"total training time {total.Elapsed.TotalSeconds:F2} sec"));
        return 0;
    }
}
