using System.Globalization;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Distributed;
using CharRnn.Rnn.Training;

namespace CharRnn.Cli;

/// <summary>The run itself, once <see cref="Create"/>'s rules have given it its options, data, backend and outputs:
/// the header lines, the training loop's hooks (reports, saves), Ctrl+C, failures, and the closing lines.</summary>
internal static partial class TrainCommand
{
    sealed record Outputs(CheckpointFolder? Checkpoints, string? Metrics, string? Plot, TensorBoardWriter? Board, RunOutputPaths Paths,
        bool ReportPoints, bool BackfillBoard);

    static string? Full(string? path) => path != null ? Path.GetFullPath(path) : null;

    static int Train(TrainOptions o, TrainSchedule schedule, Corpus data, IBackend backend, Checkpoint? from, PortableModel? init, Outputs outs,
        TextWriter stdout, TextWriter stderr, CancellationToken cancel, ICollective ranks)
    {
        using var trainer = new Trainer(backend, data, o, initial: init?.Parameters, resume: from?.ToState(), ranks: ranks);
        var inv = CultureInfo.InvariantCulture;
        stderr.WriteLine(string.Create(inv,
            $"charrnn: {(o.PresetName == TrainOptions.CharRnnPreset ? "char-rnn recipe (--preset char-rnn): " : "")}{o.Model.ToString().ToLowerInvariant()} {o.Cell.ToString().ToUpperInvariant()}{(o.Layers > 1 ? $" ×{o.Layers} layers" : "")}, {o.Sampling.ToString().ToLowerInvariant()} sampling, " +
            $"{o.Optimizer.ToString().ToLowerInvariant()} lr {o.LearningRate}, clip {(o.Clip is float c ? c.ToString(inv) : "none")}, " +
            $"H {o.Hidden}, B {o.Batch}, T {o.Steps}, {o.Epochs} epochs; corpus {data.Length} chars, vocab {data.Vocab.Count}, " +
            $"{trainer.EpochSize} minibatches/epoch{(o.ValFraction is double f ? string.Create(inv, $", {f:P0} held out for validation") : "")}; " +
            $"on {backend.Description}, input {trainer.Driver.Input.ToString().ToLowerInvariant()}"));
        if (!backend.RunsOnHost)
            stderr.WriteLine($"charrnn: recurrence {trainer.Driver.DescribeRecurrence()}; training step as a CUDA graph: {trainer.Step.GraphStatus}");
        trainer.Step.Notice = m => stderr.WriteLine("charrnn: " + m);
        if (from != null)
            stderr.WriteLine($"charrnn: resuming after {Position(from.Header.Epoch, from.Header.Minibatch, trainer.EpochSize)} (checkpoint written on {from.Header.Backend})");
        if (init != null) stderr.WriteLine($"charrnn: starting from the weights of a {init.Spec.Kind.ToString().ToLowerInvariant()} {init.Spec.Cell.ToString().ToUpperInvariant()} (H {init.Spec.Hidden} ×{init.Spec.Layers})");
        // One history across resumes: what the checkpoint remembers up to where it stands, then this run's points.
        var history = (from?.Header.History ?? []).Where(s => s.Step is long st ? st <= trainer.TotalMinibatches : s.Epoch <= trainer.CompletedEpochs);
        var log = new RunLog(stdout, stderr, o, trainer, history, backend.Name, outs.Metrics, outs.Board, outs.BackfillBoard, outs.Plot, outs.ReportPoints);
        double? lastVal = from?.Header.ValPerplexity;
        string? lastSaved = null;
        long savedAt = -1; // the run minibatch of the last save, on every rank (lastSaved is rank 0's alone)
        void Save(SavePoint p)
        {
            var ck = Checkpoint.Capture(trainer, log.Stats, outs.Checkpoints?.Path, p.ValPerplexity, outs.Paths); // every rank: the state is gathered
            savedAt = trainer.TotalMinibatches;
            if (outs.Checkpoints == null) return; // not rank 0
            var path = outs.Checkpoints.FileFor(p);
            ck.Save(path);
            lastSaved = path;
            bool best = outs.Checkpoints.Published(path, p.ValPerplexity);
            log.Progress.Clear();
            stderr.WriteLine(string.Create(inv, $"charrnn: saved {path}{(p.ValPerplexity is double v ? $" (validation perplexity {v:F6}{(best ? ", the best so far" : "")})" : "")}"));
            if (outs.Paths.KeepLast is int n)
                foreach (var gone in outs.Checkpoints.KeepLast(n)) stderr.WriteLine($"charrnn: --keep-last {n}: deleted {gone}");
        }
        TrainOutcome outcome;
        try
        {
            outcome = trainer.Train(schedule, new TrainHooks
            {
                Report = r =>
                {
                    log.Report(r);
                    lastVal = r.ValPerplexity;
                },
                // Per-epoch numbers cost a device sync each epoch: only when something keeps them.
                Epoch = log.WantsEpochs(outs.Checkpoints != null)
                    ? s =>
                    {
                        lastVal = s.ValPerplexity; // measured on these very weights, or null: a Ctrl+C save names it (#24 bug 3)
                        log.Epoch(s);
                    }
                    : null,
                Save = schedule.Save != null ? Save : null,
                Minibatch = log.Minibatch,
            }, cancel);
        }
        catch (OperationCanceledException)
        {
            log.FlushVal();
            log.Progress.Clear();
            string saved = "";
            if (schedule.Save != null && trainer.TotalMinibatches > (from == null ? 0 : (long)from.Header.Epoch * trainer.EpochSize + from.Header.Minibatch))
            {
                var p = new SavePoint(trainer.CompletedEpochs, trainer.EpochSize, trainer.EpochSize, lastVal);
                // The state at this boundary (as a --save-every save), unless saved there already. Decided from what every
                // rank knows alike: a Save gathers from every rank, so one rank skipping it left the others waiting in the
                // gather until --rank-timeout (an interrupted mpiexec job hung or exited 2).
                if (savedAt != trainer.TotalMinibatches) Save(p);
                if (outs.Checkpoints != null) saved = $"; checkpoint {lastSaved} (continue with: charrnn train --resume {outs.Checkpoints.Path})";
            }
            log.Plot();
            stderr.WriteLine($"charrnn: interrupted after epoch {trainer.CompletedEpochs}{saved}.");
            return 130;
        }
        catch (Exception e)
        {
            log.Progress.Clear();
            try { log.Plot(); } catch (CharRnnException) { } // the run's own error is the one to report
            throw new RunFailedException(e, lastSaved != null
                ? $"The last checkpoint, {lastSaved}, is intact: continue from it with --resume {lastSaved}."
                : outs.Checkpoints != null ? "No checkpoint was written before this." : null);
        }
        backend.Synchronize();
        log.FlushVal();
        log.Progress.Clear();
        if (outcome == TrainOutcome.EarlyStopped)
            stderr.WriteLine(
                $"charrnn: stopped early after epoch {trainer.CompletedEpochs}: the validation perplexity has not improved for {schedule.Patience} evaluations" +
                (outs.Checkpoints != null ? $"; the best model is {Path.Combine(outs.Checkpoints.Path, CheckpointFolder.Best)}" : ""));
        log.Total();
        if (ranks.Size > 1 && trainer.Step.Reductions > 0)
            stderr.WriteLine(string.Create(inv,
                $"charrnn: gradient average over {ranks.Size} ranks: {1e3 * trainer.Step.ReductionSeconds / trainer.Step.Reductions:F3} ms per step waited after the backward pass " +
                $"({100 * trainer.Step.ReductionSeconds / log.Elapsed.TotalSeconds:F1}% of the run)"));
        log.Plot();
        return 0;
    }


    static string Position(int epochs, int minibatch, int epochSize) =>
        minibatch == 0 ? $"epoch {epochs}" : $"minibatch {minibatch}/{epochSize} of epoch {epochs + 1}";
}
