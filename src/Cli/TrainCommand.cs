using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Distributed;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;
using CharRnn.Rnn.Devices;

namespace CharRnn.Cli;

internal static partial class TrainCommand
{
    const double MaxRankTimeout = 365 * 24 * 3600.0; // TimeSpan holds ~29 000 years; a year is the sane bound

    public static Command Create(TextWriter stdout, TextWriter stderr, CancellationToken cancel, ICollective ranks)
    {
        var preset = new Option<string?>("--preset")
        {
            Description = "scratch-random (book 6.4, the default), scratch-consecutive (6.4 with consecutive sampling), " +
                          "concise (6.5: nn.RNN + Linear, Adam lr 1e-3, consecutive sampling), gru-scratch / lstm-scratch " +
                          "(6.7/6.8: 160 epochs, SGD lr 100, clip 0.01), gru-concise / lstm-concise (nn.GRU/nn.LSTM, Adam lr 1e-2). " +
                          "The book's concise trainers never clip (their clipping loop consumes a generator), so these presets " +
                          "do not clip either; pass --clip 0.01 to clip for real. char-rnn (the default with --corpus): char-rnn/torch-rnn's " +
                          "recipe for your own text: LSTM 2 × 128, B 50, T 50, Adam 2e-3, clip 5, 5% validation, lr ×0.5 every 5 epochs, " +
                          "50 epochs, 200 sampled characters per report.",
        };
        preset.AcceptOnlyFromAmong(TrainOptions.PresetNames);
        var epochs = new Option<int?>("--epochs") { Description = "Number of epochs (book: 250). With --resume: the new total." };
        var steps = new Option<int?>("--steps") { Description = "Time steps T per minibatch (book: 35)." };
        var batch = new Option<int?>("--batch") { Description = "Minibatch size B (book: 32)." };
        var hidden = new Option<int?>("--hidden") { Description = "Hidden units H (book: 256)." };
        var lr = new Option<float?>("--lr") { Description = "Learning rate (book: 100 for SGD, 1e-3 for Adam)." };
        var lrDecay = new Option<float?>("--lr-decay") { Description = "Multiply the learning rate by this after each epoch past --lr-decay-after (char-rnn's schedule; default 1: constant)." };
        var lrDecayAfter = new Option<int?>("--lr-decay-after") { Description = "The epoch after which --lr-decay starts (default 0)." };
        var lrDecayEvery = new Option<int?>("--lr-decay-every") { Description = "Apply --lr-decay once every N epochs (torch-rnn's lr_decay_every; default 1: every epoch, char-rnn's)." };
        var clip = new Option<string?>("--clip") { Description = "Global-norm clipping threshold θ, or 'none' (book: 0.01; concise preset: none, as the book)." };
        var sampling = new Option<string?>("--sampling") { Description = "random or consecutive minibatches." };
        sampling.AcceptOnlyFromAmong("random", "consecutive");
        var optimizer = new Option<string?>("--optimizer") { Description = "sgd, adam, or rmsprop (char-rnn's: decay 0.95, eps 1e-8)." };
        optimizer.AcceptOnlyFromAmong("sgd", "adam", "rmsprop");
        var dropout = new Option<float?>("--dropout") { Description = "Dropout between stacked layers (nn.RNN's dropout; needs --layers 2+; default 0). Off for validation and generation." };
        var predPeriod = new Option<int?>("--pred-period") { Description = "Print perplexity and predictions every N epochs (book: 50). Same as --print-every N." };
        var printEvery = new Option<string?>("--print-every") { Description = "Print perplexity and predictions every N epochs, or every N minibatches with 'Nit' (e.g. 500it). The last epoch always prints." };
        var evalEvery = new Option<string?>("--eval-every") { Description = "Validation perplexity (with --val-fraction) every N epochs or 'Nit' minibatches (default 1: every epoch)." };
        var predLen = new Option<int?>("--pred-len") { Description = "Characters to predict after each prefix (book: 50; char-rnn preset: 200)." };
        var predTemperature = new Option<double?>("--pred-temperature") { Description = "Sample the report's predictions at this temperature (char-rnn preset: 1); 0 is the book's greedy prediction (the book presets' default)." };
        var prefix = new Option<string[]>("--prefix") { Description = "Prefix to predict from; repeatable (book: 分开, 不分开; with --corpus: the text's own first characters)." };
        var chars = new Option<string?>("--chars") { Description = "Use the first N characters of the corpus, or 'all' (book: 10000; with --corpus: all)." };
        var newlines = new Option<string?>("--newlines") { Description = "space (the book: line breaks become spaces; default for the shipped corpus) or keep (default with --corpus)." };
        newlines.AcceptOnlyFromAmong("space", "keep");
        var seed = new Option<ulong?>("--seed") { Description = "Random seed for initialisation, sampling and dropout (default 0)." };
        var corpus = CommonOptions.Corpus();
        var device = CommonOptions.Device();
        var precision = CommonOptions.Precision();
        var recurrence = CommonOptions.Recurrence();
        var graph = CommonOptions.Graph();
        var input = CommonOptions.Input();
        var blas = CommonOptions.Blas();
        var activation = new Option<string?>("--activation") { Description = "tanh (book) or relu." };
        activation.AcceptOnlyFromAmong("tanh", "relu");
        var cell = new Option<string?>("--cell") { Description = "rnn (book 6.4/6.5), gru (6.7) or lstm (6.8); PyTorch's gate order and equations." };
        cell.AcceptOnlyFromAmong("rnn", "gru", "lstm");
        var layers = new Option<int?>("--layers") { Description = "Stacked recurrent layers (nn.RNN's num_layers; default 1)." };
        var valFraction = new Option<double?>("--val-fraction") { Description = "Hold out this fraction of the corpus's tail; its perplexity is reported every --eval-every." };
        var patience = new Option<int?>("--patience") { Description = "Stop early when the validation perplexity has not improved for N evaluations (needs --val-fraction)." };
        var checkpointDir = new Option<string?>("--checkpoint-dir") { Description = "Save checkpoints here (created if missing) every --save-every and at the end; latest.ckpt and best.ckpt (lowest validation perplexity) link to them." };
        var saveEvery = new Option<string?>("--save-every") { Description = "Checkpoints every N epochs, or every N minibatches with 'Nit' (default: the print interval)." };
        var resume = new Option<string?>("--resume") { Description = "Continue the run saved in this checkpoint (or a --checkpoint-dir: its latest), bit for bit on the same backend. It remembers its corpus, options and folder: --resume alone continues; restating an option unchanged is fine." };
        var initFrom = new Option<string?>("--init-from") { Description = "Start a new run from this checkpoint's weights (or a folder's latest): fine-tuning, with new optimizer settings, on text made of the model's characters." };
        var metrics = new Option<string?>("--metrics") { Description = "Write one JSON object per epoch, and per report with --print-every Nit (epoch, step, perplexity, val_perplexity, bits_per_char, val_bits_per_char, seconds, tokens_per_s, device, learning_rate, grad_norm; with several ranks comm_wait_ms, the milliseconds a step waited for the gradient average) to this .jsonl file; the checkpoint remembers it, and a resume continues its history." };
        var tensorboard = new Option<string?>("--tensorboard") { Description = "Write TensorBoard event files to this folder (train/validation perplexity and bits per character, tokens/s, learning rate, gradient norm per epoch or per Nit report): tensorboard --logdir DIR. The checkpoint remembers it." };
        var rankTimeout = new Option<double?>("--rank-timeout") { Description = "Several processes (mpiexec -n N), or NCCL: seconds a rank waits for the others (an MPI collective, an NCCL all-reduce on the GPU) before it calls the run failed (default 600)." };
        var mpi = new Option<string?>("--mpi") { Description = "Under mpiexec/mpirun: the MPI library, auto (the launcher's own: Open MPI's under its mpirun, MPICH's under Hydra's mpiexec), mpich or openmpi (also CHARRNN_MPI)." };
        mpi.AcceptOnlyFromAmong("auto", "mpich", "openmpi");
        var nccl = new Option<bool>("--nccl") { Description = "GPU: average gradients with NCCL even for a single rank (several GPU ranks always do)." };
        var plot = new Option<string?>("--plot") { Description = "Draw perplexity per epoch (log scale; train and validation) to this .png or .svg file (also on Ctrl+C)." };
        var keepLast = new Option<int?>("--keep-last") { Description = "Keep only the N newest checkpoints in --checkpoint-dir (best.ckpt's target is always kept; default: keep all)." };
        var force = new Option<bool>("--force") { Description = "Start a new run in a --checkpoint-dir that holds another run's checkpoints, deleting them (without it, such a folder is refused: runs would mix)." };

        var cmd = new Command("train", "Train a char-RNN on the Jay Chou lyrics (or your own text) and print the book's log.");
        foreach (var o in new Option[] { preset, cell, layers, epochs, steps, batch, hidden, lr, lrDecay, lrDecayAfter, lrDecayEvery, clip, sampling, optimizer, dropout,
                     predPeriod, printEvery, evalEvery, predLen, predTemperature, prefix, chars, newlines, seed, corpus, device, precision, recurrence, graph, input, blas, activation,
                     valFraction, patience, checkpointDir, saveEvery, resume, initFrom, metrics, plot, tensorboard, rankTimeout, mpi, nccl, keepLast, force })
            cmd.Options.Add(o);

        cmd.SetAction(pr => Program.Guard(stderr, () =>
        {
            var (clipSet, clipValue) = OptionValues.Clip(pr.GetValue(clip));
            if (pr.GetValue(predPeriod) != null && pr.GetValue(printEvery) != null)
                throw new CharRnnException("--pred-period and --print-every say the same thing; give one.");
            var print = pr.GetValue(printEvery) is string pe ? Interval.Parse(pe, "--print-every") : (Interval?)null;
            var given = new TrainOverrides
            {
                Preset = pr.GetValue(preset),
                Cell = pr.GetValue(cell) switch { "rnn" => CellKind.Rnn, "gru" => CellKind.Gru, "lstm" => CellKind.Lstm, _ => null },
                Layers = pr.GetValue(layers),
                Steps = pr.GetValue(steps),
                Batch = pr.GetValue(batch),
                Hidden = pr.GetValue(hidden),
                LearningRate = pr.GetValue(lr),
                LrDecay = pr.GetValue(lrDecay),
                LrDecayAfter = pr.GetValue(lrDecayAfter),
                LrDecayEvery = pr.GetValue(lrDecayEvery),
                PredTemperature = pr.GetValue(predTemperature),
                Clip = clipSet ? new ClipSetting(clipValue) : null,
                Sampling = pr.GetValue(sampling) switch { "random" => SamplingKind.Random, "consecutive" => SamplingKind.Consecutive, _ => null },
                Optimizer = pr.GetValue(optimizer) switch { "sgd" => OptimizerKind.Sgd, "adam" => OptimizerKind.Adam, "rmsprop" => OptimizerKind.RmsProp, _ => null },
                Dropout = pr.GetValue(dropout),
                Seed = pr.GetValue(seed),
                Input = CommonOptions.InputMode(pr.GetValue(input)),
                Activation = pr.GetValue(activation) switch { "tanh" => Activation.Tanh, "relu" => Activation.Relu, _ => null },
                ValFraction = pr.GetValue(valFraction),
                Epochs = pr.GetValue(epochs),
                PredPeriod = pr.GetValue(predPeriod) ?? (print is { Minibatches: false } p ? p.Count : null),
                PredLen = pr.GetValue(predLen),
                Prefixes = pr.GetValue(prefix),
            };
            if (pr.GetValue(rankTimeout) is double rt)
                ranks.Timeout = rt > 0 && rt <= MaxRankTimeout ? TimeSpan.FromSeconds(rt) : throw new CharRnnException(
                    $"--rank-timeout must be a positive number of seconds, at most {MaxRankTimeout:0} (a year; got {rt.ToString(CultureInfo.InvariantCulture)}).");
            var resumeFrom = pr.GetValue(resume);
            var initPath = pr.GetValue(initFrom);
            RunRules.CheckOneOrigin(resumeFrom != null, initPath != null);
            var resumeFile = resumeFrom != null ? CheckpointFolder.Resolve(resumeFrom, "--resume") : null;
            var initFile = initPath != null ? CheckpointFolder.Resolve(initPath, "--init-from") : null;
            Checkpoint? from = resumeFile != null ? Checkpoint.Load(resumeFile) : null;
            PortableModel? init = initFile != null ? PortableModel.Load(initFile) : null;

            // Which text, which options: RunRules decides (the shipped corpus and an --init-from's text are found here).
            var resumed = from?.Origin;
            var initOrigin = init?.Origin;
            var newlineFlag = pr.GetValue(newlines) switch { "space" => NewlineMode.Space, "keep" => NewlineMode.Keep, _ => (NewlineMode?)null };
            var text = RunRules.Corpus(pr.GetValue(corpus), pr.GetValue(chars) is string c ? (true, OptionValues.Chars(c)) : (false, null),
                newlineFlag, resumed, initOrigin, InitCorpus, OptionValues.DefaultCorpus);
            var corpusPath = text.Path;
            var data = Corpus.Load(corpusPath, text.MaxChars, text.Newlines, init?.Vocabulary);
            if (resumed != null) RunRules.CheckResumedData(resumed, data, corpusPath, ranks.Size);
            var o = RunRules.Options(given, resumed, initOrigin, text.OwnText, () => OptionValues.FirstCharacters(data));
            var schedule = new TrainSchedule
            {
                Print = print ?? Interval.Epochs(o.PredPeriod),
                Eval = pr.GetValue(evalEvery) is string ee ? Interval.Parse(ee, "--eval-every") : Interval.Epochs(1),
                Patience = pr.GetValue(patience),
            };
            _ = pr.GetValue(saveEvery) is string sv0 ? Interval.Parse(sv0, "--save-every") : default; // a bad value is named before anything else
            if (schedule.Patience is int pat && pat < 1) throw new CharRnnException($"--patience must be a positive whole number (got {pat}).");
            if (schedule.Patience != null && o.ValFraction == null)
                throw new CharRnnException("--patience stops on the validation perplexity: give --val-fraction too (e.g. --val-fraction 0.1).");

            // Every output is checked (and the checkpoint folder locked) before anything is trained. A resume continues
            // the outputs its run kept (the checkpoint remembers them) unless told otherwise.
            var kept = from?.Header.Outputs;
            var metricsPath = pr.GetValue(metrics) ?? kept?.Metrics;
            var plotPath = pr.GetValue(plot) ?? kept?.Plot;
            var boardPath = pr.GetValue(tensorboard) ?? kept?.TensorBoard;
            var keepN = pr.GetValue(keepLast) ?? kept?.KeepLast;
            var continued = new[] { (pr.GetValue(metrics), kept?.Metrics, "--metrics"), (pr.GetValue(plot), kept?.Plot, "--plot"), (pr.GetValue(tensorboard), kept?.TensorBoard, "--tensorboard") }
                .Where(x => x.Item1 == null && x.Item2 != null).Select(x => $"{x.Item3} {x.Item2}").ToList();
            if (continued.Count > 0) stderr.WriteLine($"charrnn: continuing the run's {string.Join(", ", continued)}");
            if (keepN is int kn && kn < 1) throw new CharRnnException($"--keep-last must be a positive whole number of checkpoints (got {kn}).");
            (string?, string)[] inputs = [(corpusPath, "--corpus"), (resumeFile, "--resume"), (initFile, "--init-from")];
            if (metricsPath != null) AtomicFile.CheckWritable(metricsPath, "--metrics", inputs);
            if (plotPath != null) PlotWriter.CheckPath(plotPath, inputs);
            if (metricsPath != null && plotPath != null && AtomicFile.Stat(metricsPath) is { } ms && AtomicFile.Stat(plotPath) is { } ps && ms.SameFileAs(ps))
                throw new CharRnnException($"--metrics and --plot name the same file ({metricsPath}); name two files.");
            var dir = pr.GetValue(checkpointDir);
            if (dir == null && from?.Header.CheckpointDir is string recorded)
            {
                // A resume saves where it was resumed from: a moved or copied folder is the run's new home (it recreated
                // the recorded folder, or moved the original's links). A checkpoint file outside any run's folder keeps
                // the recorded one.
                var home = CheckpointFolder.IsCheckpointName(Path.GetFileName(resumeFile!)) ? Path.GetDirectoryName(Path.GetFullPath(resumeFile!))! : recorded;
                if (Path.GetFullPath(home) != Path.GetFullPath(recorded))
                    stderr.WriteLine($"charrnn: the checkpoint was saved in {recorded}; this run saves in {home}, where it was resumed from");
                dir = home;
            }
            using var folder = dir != null && ranks.Rank == 0 ? CheckpointFolder.Open(dir) : null; // rank 0 writes for all
            if (folder is { RemovedTemps: > 0 })
                stderr.WriteLine($"charrnn: removed {folder.RemovedTemps} unfinished checkpoint file(s) that a killed run left in {folder.Path}");
            // One run per folder: a new run (or a resume from elsewhere) among another run's checkpoints would overwrite
            // some of them and leave latest.ckpt and best.ckpt pointing into different runs.
            bool continues = resumeFile != null && folder != null && Path.GetDirectoryName(Path.GetFullPath(resumeFile)) == Path.GetFullPath(folder.Path);
            if (folder != null && !continues && folder.Checkpoints().ToList() is { Count: > 0 } others)
            {
                if (!pr.GetValue(force))
                    throw new CharRnnException($"The checkpoint folder {folder.Path} holds another run's checkpoints ({others.Count} file(s), e.g. {Path.GetFileName(others[^1])}). " +
                                               $"Continue that run with --resume {folder.Path}, choose a new --checkpoint-dir, or give --force to delete them and start over.");
                foreach (var f in others) File.Delete(f);
                stderr.WriteLine($"charrnn: --force: deleted {others.Count} checkpoint file(s) of an earlier run in {folder.Path}");
            }
            var save = pr.GetValue(saveEvery) is string se ? Interval.Parse(se, "--save-every") : (Interval?)null;
            if (dir != null) schedule = schedule with { Save = save ?? schedule.Print };
            else if (save != null) throw new CharRnnException("--save-every needs a folder to save in: give --checkpoint-dir too.");
            if (dir == null && pr.GetValue(keepLast) != null) throw new CharRnnException("--keep-last prunes a checkpoint folder: give --checkpoint-dir too.");
            // Several ranks on GPUs: one GPU each, by the rank's place on its machine.
            var dev = pr.GetValue(device)!;
            if (ranks.Size > 1 && dev is "cuda" or "auto" && Cuda.GpuProbe.Run(0) is { Usable: true, Info: { } gpu })
                dev = $"cuda:{Launch.LocalRank() % gpu.DeviceCount}";
            // A resume runs the recurrence plan its checkpoint trained with where it can (--recurrence auto).
            var gpuOptions = CommonOptions.Gpu(pr.GetValue(precision)!, pr.GetValue(recurrence)!, pr.GetValue(graph)!) with { ResumePlan = from?.Header.Recurrence };
            using var backend = BackendFactory.Create(dev, pr.GetValue(blas), stderr, gpuOptions);
            using var gpuRanks = BackendFactory.DeviceCollective(backend, ranks, pr.GetValue(nccl));
            if (pr.GetValue(nccl) && gpuRanks == null) throw new CharRnnException("--nccl averages gradients on GPUs: it needs --device cuda.");
            var team = (ICollective?)gpuRanks ?? ranks;
            RunRules.CheckBatchSplits(o.Batch, team.Size); // before the line that names the rows per rank
            if (team.Size > 1 || gpuRanks != null) stderr.WriteLine($"charrnn: {team.Size} rank(s), {team.Description}; --batch {o.Batch} is the global batch, {o.Batch / team.Size} rows per rank");
            bool points = schedule.Print.Minibatches; // --print-every Nit: a metrics/TensorBoard/plot point per report
            using var board = boardPath is string tb ? new TensorBoardWriter(tb, points) : null;
            var paths = new RunOutputPaths(Full(metricsPath), Full(boardPath), Full(plotPath), keepN);
            // TensorBoard shows one run: a folder this run did not write before gets the history first (no gap).
            bool backfill = board != null && from != null && kept?.TensorBoard != paths.TensorBoard;
            var outs = new Outputs(folder, metricsPath, plotPath, board, paths, points, backfill);
            return Train(o, schedule, data, backend, from, init, outs, stdout, stderr, cancel, team);
        }));
        return cmd;
    }

    /// <summary>The corpus an --init-from checkpoint names: the shipped one by its name, a user's text where it was.</summary>
    static string InitCorpus(string recorded)
    {
        if (Path.GetFileName(recorded) == "jaychou_lyrics.txt.zip") return OptionValues.DefaultCorpus();
        if (File.Exists(recorded)) return recorded;
        throw new CharRnnException($"--init-from: the checkpoint was trained on {recorded}, which is gone. Give the text to fine-tune on with --corpus FILE.");
    }
}
