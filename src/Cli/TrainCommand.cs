using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;

namespace CharRnn.Cli;

internal static class TrainCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr, CancellationToken cancel = default)
    {
        var preset = new Option<string?>("--preset")
        {
            Description = "scratch-random (book 6.4, the default), scratch-consecutive (6.4 with consecutive sampling), " +
                          "concise (6.5: nn.RNN + Linear, Adam lr 1e-3, consecutive sampling), gru-scratch / lstm-scratch " +
                          "(6.7/6.8: 160 epochs, SGD lr 100, clip 0.01), gru-concise / lstm-concise (nn.GRU/nn.LSTM, Adam lr 1e-2). " +
                          "The book's concise trainers never clip (their clipping loop consumes a generator), so these presets " +
                          "do not clip either; pass --clip 0.01 to clip for real.",
        };
        preset.AcceptOnlyFromAmong(TrainOptions.PresetNames);
        var epochs = new Option<int?>("--epochs") { Description = "Number of epochs (book: 250). With --resume: the new total." };
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
        var prefix = new Option<string[]>("--prefix") { Description = "Prefix to predict from; repeatable (book: 分开, 不分开)." };
        var chars = new Option<string?>("--chars") { Description = "Use the first N characters of the corpus, or 'all' (book: 10000)." };
        var seed = new Option<ulong?>("--seed") { Description = "Random seed for initialisation and sampling (default 0)." };
        var corpus = CommonOptions.Corpus();
        var device = CommonOptions.Device();
        var tf32 = CommonOptions.Tf32();
        var input = CommonOptions.Input();
        var blas = CommonOptions.Blas();
        var activation = new Option<string?>("--activation") { Description = "tanh (book) or relu." };
        activation.AcceptOnlyFromAmong("tanh", "relu");
        var cell = new Option<string?>("--cell") { Description = "rnn (book 6.4/6.5), gru (6.7) or lstm (6.8); PyTorch's gate order and equations." };
        cell.AcceptOnlyFromAmong("rnn", "gru", "lstm");
        var layers = new Option<int?>("--layers") { Description = "Stacked recurrent layers (nn.RNN's num_layers; default 1)." };
        var valFraction = new Option<double?>("--val-fraction") { Description = "Hold out this fraction of the corpus's tail and report its perplexity every --pred-period epochs." };
        var checkpointDir = new Option<string?>("--checkpoint-dir") { Description = "Save checkpoints here (created if missing): epoch-NNNNN.ckpt every --save-every epochs and at the end." };
        var saveEvery = new Option<int?>("--save-every") { Description = "Epochs between checkpoints (default: --pred-period)." };
        var resume = new Option<string?>("--resume") { Description = "Continue the run saved in this checkpoint, bit for bit (same backend). Model and optimizer settings come from it; --epochs sets the new total." };
        var metrics = new Option<string?>("--metrics") { Description = "Write one JSON object per epoch (epoch, perplexity, val_perplexity, seconds, tokens_per_s, device) to this .jsonl file." };
        var plot = new Option<string?>("--plot") { Description = "Draw perplexity per epoch (log scale; train and validation) to this .png or .svg file." };

        var cmd = new Command("train", "Train a char-RNN on the Jay Chou lyrics (or your corpus) and print the book's log.");
        foreach (var o in new Option[] { preset, cell, layers, epochs, steps, batch, hidden, lr, clip, sampling, optimizer, predPeriod, predLen,
                     prefix, chars, seed, corpus, device, tf32, input, blas, activation, valFraction, checkpointDir, saveEvery, resume, metrics, plot })
            cmd.Options.Add(o);

        cmd.SetAction(pr => Program.Guard(stderr, () =>
        {
            var (clipSet, clipValue) = OptionValues.Clip(pr.GetValue(clip));
            var given = new TrainOverrides
            {
                Preset = pr.GetValue(preset),
                Cell = pr.GetValue(cell) switch { "rnn" => CellKind.Rnn, "gru" => CellKind.Gru, "lstm" => CellKind.Lstm, _ => null },
                Layers = pr.GetValue(layers),
                Steps = pr.GetValue(steps),
                Batch = pr.GetValue(batch),
                Hidden = pr.GetValue(hidden),
                LearningRate = pr.GetValue(lr),
                Clip = clipSet ? new ClipSetting(clipValue) : null,
                Sampling = pr.GetValue(sampling) switch { "random" => SamplingKind.Random, "consecutive" => SamplingKind.Consecutive, _ => null },
                Optimizer = pr.GetValue(optimizer) switch { "sgd" => OptimizerKind.Sgd, "adam" => OptimizerKind.Adam, _ => null },
                Seed = pr.GetValue(seed),
                Input = CommonOptions.InputMode(pr.GetValue(input)),
                Activation = pr.GetValue(activation) switch { "tanh" => Activation.Tanh, "relu" => Activation.Relu, _ => null },
                ValFraction = pr.GetValue(valFraction),
                Epochs = pr.GetValue(epochs),
                PredPeriod = pr.GetValue(predPeriod),
                PredLen = pr.GetValue(predLen),
                Prefixes = pr.GetValue(prefix),
            };
            Checkpoint? from = pr.GetValue(resume) is string resumePath ? Checkpoint.Load(resumePath) : null;
            var o = from != null ? RunRules.Resume(from.Header.Options, given) : RunRules.Fresh(given);
            o.Validate();
            if (from != null && o.Epochs <= from.Header.Epoch)
                throw new CharRnnException($"The checkpoint has already trained {from.Header.Epoch} epochs; pass --epochs with a larger total to continue.");
            int? maxChars = pr.GetValue(chars) is string c ? OptionValues.Chars(c) : from != null ? from.Header.CorpusLimit : Corpus.BookCharCount;
            var data = Corpus.Load(pr.GetValue(corpus) ?? OptionValues.DefaultCorpus(), maxChars);
            if (from != null && data.Fingerprint != from.Header.CorpusSha1)
                throw new CharRnnException($"The corpus differs from the one the checkpoint was trained on ({from.Header.CorpusChars} characters). Pass the same --corpus and --chars.");
            int saveEveryN = pr.GetValue(saveEvery) ?? o.PredPeriod;
            if (saveEveryN < 1) throw new CharRnnException($"--save-every must be a positive whole number (got {saveEveryN}).");
            // Every output is checked (and the checkpoint folder locked) before anything is trained.
            var metricsPath = pr.GetValue(metrics);
            if (metricsPath != null) AtomicFile.CheckWritable(metricsPath, "--metrics");
            var plotPath = pr.GetValue(plot);
            if (plotPath != null) PlotWriter.CheckPath(plotPath);
            using var folder = pr.GetValue(checkpointDir) is string dir ? CheckpointFolder.Open(dir) : null;
            if (folder is { RemovedTemps: > 0 })
                stderr.WriteLine($"charrnn: removed {folder.RemovedTemps} unfinished checkpoint file(s) that a killed run left in {folder.Path}");
            using var backend = BackendFactory.Create(pr.GetValue(device)!, pr.GetValue(blas), stderr, pr.GetValue(tf32));
            return Train(o, data, backend, from, new Outputs(folder, saveEveryN, metricsPath, plotPath, maxChars), stdout, stderr, cancel);
        }));
        return cmd;
    }

    sealed record Outputs(CheckpointFolder? Checkpoints, int SaveEvery, string? Metrics, string? Plot, int? CorpusLimit);

    static int Train(TrainOptions o, Corpus data, IBackend backend, Checkpoint? from, Outputs outs, TextWriter stdout, TextWriter stderr,
        CancellationToken cancel)
    {
        using var trainer = new Trainer(backend, data, o, resume: from?.ToState());
        var inv = CultureInfo.InvariantCulture;
        stderr.WriteLine(string.Create(inv,
            $"charrnn: {o.Model.ToString().ToLowerInvariant()} {o.Cell.ToString().ToUpperInvariant()}{(o.Layers > 1 ? $" ×{o.Layers} layers" : "")}, {o.Sampling.ToString().ToLowerInvariant()} sampling, " +
            $"{o.Optimizer.ToString().ToLowerInvariant()} lr {o.LearningRate}, clip {(o.Clip is float c ? c.ToString(inv) : "none")}, " +
            $"H {o.Hidden}, B {o.Batch}, T {o.Steps}, {o.Epochs} epochs; corpus {data.Length} chars, vocab {data.Vocab.Count}, " +
            $"{trainer.EpochSize} minibatches/epoch{(o.ValFraction is double f ? string.Create(inv, $", {f:P0} held out for validation") : "")}; " +
            $"on {backend.Description}, input {trainer.Driver.Input.ToString().ToLowerInvariant()}"));
        if (from != null) stderr.WriteLine($"charrnn: resuming after epoch {from.Header.Epoch} (checkpoint written on {from.Header.Backend})");
        var progress = new Progress(stderr, trainer.CompletedEpochs + 1, o.Epochs, Progress.TerminalAttached, Progress.HeartbeatFromEnvironment());
        var metrics = outs.Metrics != null ? new MetricsWriter(outs.Metrics, backend.Name) : null;
        var stats = new List<EpochStats>();
        bool perEpoch = metrics != null || outs.Plot != null || Progress.TerminalAttached;
        var total = Stopwatch.StartNew();
        string? lastSaved = null;
        void Save(int epoch)
        {
            var path = outs.Checkpoints!.FileFor(epoch);
            Checkpoint.Capture(trainer, outs.CorpusLimit).Save(path);
            lastSaved = path;
        }
        bool SaveAt(int epoch) => outs.Checkpoints != null && (epoch % outs.SaveEvery == 0 || epoch == o.Epochs);
        void Plot()
        {
            if (outs.Plot != null && stats.Count > 0)
                PlotWriter.Write(outs.Plot, stats, $"char-RNN {o.Model.ToString().ToLowerInvariant()}, {o.Sampling.ToString().ToLowerInvariant()} sampling, {backend.Name}");
        }
        try
        {
            trainer.Train(
                report: r =>
                {
                    progress.Clear();
                    stdout.WriteLine(string.Create(inv, $"epoch {r.Epoch}, perplexity {r.Perplexity:F6}, time {r.Seconds:F2} sec"));
                    if (r.ValPerplexity is double vp) stderr.WriteLine(string.Create(inv, $"epoch {r.Epoch}, validation perplexity {vp:F6}"));
                    foreach (var p in r.Predictions) stdout.WriteLine($" - {p}");
                    stdout.Flush();
                },
                everyEpoch: perEpoch ? s =>
                {
                    stats.Add(s);
                    metrics?.Add(s);
                    progress.Update(s);
                } : null,
                afterEpoch: epoch =>
                {
                    if (SaveAt(epoch)) Save(epoch);
                },
                cancel: cancel,
                checkpointAt: SaveAt,
                minibatchDone: (epoch, done, count) => progress.Minibatch(epoch, done, count, (long)o.Batch * o.Steps));
        }
        catch (OperationCanceledException)
        {
            progress.Clear();
            int done = trainer.CompletedEpochs;
            string saved = "";
            if (outs.Checkpoints != null && done > (from?.Header.Epoch ?? 0))
            {
                if (lastSaved != outs.Checkpoints.FileFor(done)) Save(done); // the state at this boundary (same as a --save-every save)
                saved = $"; checkpoint {lastSaved} (continue with --resume {lastSaved} --epochs {o.Epochs})";
            }
            Plot();
            stderr.WriteLine($"charrnn: interrupted after epoch {done}{saved}.");
            return 130;
        }
        catch (Exception e)
        {
            progress.Clear();
            try { Plot(); } catch (CharRnnException) { } // the run's own error is the one to report
            throw new RunFailedException(e, lastSaved != null
                ? $"The last checkpoint, {lastSaved}, is intact: continue from it with --resume {lastSaved}."
                : outs.Checkpoints != null ? "No checkpoint was written before this." : null);
        }
        backend.Synchronize();
        progress.Clear();
        stdout.WriteLine(string.Create(inv, $"total training time {total.Elapsed.TotalSeconds:F2} sec"));
        Plot();
        return 0;
    }
}
