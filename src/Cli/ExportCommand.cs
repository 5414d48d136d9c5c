using System.CommandLine;
using CharRnn.Rnn;
using CharRnn.Rnn.Checkpoints;

namespace CharRnn.Cli;

/// <summary><c>charrnn export</c>: a checkpoint's model as a safetensors file under PyTorch's names.</summary>
internal static class ExportCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "The checkpoint to export (or a --checkpoint-dir: its latest).", Required = true };
        var format = new Option<string>("--format") { Description = "safetensors: PyTorch's names and layouts (the book's concise RNNModel: rnn.* and dense.*), vocabulary in its metadata.", DefaultValueFactory = _ => "safetensors" };
        format.AcceptOnlyFromAmong("safetensors");
        var output = new Argument<string>("OUT") { Description = "The file to write, e.g. model.safetensors." };
        var cmd = new Command("export", "Write a trained model in a format other tools load (safetensors, for PyTorch and others).");
        cmd.Options.Add(checkpoint);
        cmd.Options.Add(format);
        cmd.Arguments.Add(output);
        cmd.SetAction(pr => Program.Guard(stderr, () =>
        {
            var path = pr.GetValue(output)!;
            var ckPath = CheckpointFolder.Resolve(pr.GetValue(checkpoint)!, "--checkpoint");
            AtomicFile.CheckWritable(path, "OUT", (ckPath, "--checkpoint"));
            var ck = Checkpoint.Load(ckPath);
            switch (pr.GetValue(format)) // one format today; a second one is a case here (and in AcceptOnlyFromAmong)
            {
                case "safetensors": TorchFormat.Export(PortableModel.Of(ck), path, ck.Header.Epoch); break;
                case var other: throw new CharRnnException($"--format {other} is not a format export writes; use --format safetensors.");
            }
            var spec = ck.Spec;
            stderr.WriteLine($"charrnn: wrote {path}: {spec.Kind.ToString().ToLowerInvariant()} {spec.Cell.ToString().ToUpperInvariant()} ×{spec.Layers}, H {spec.Hidden}, vocabulary {spec.Vocab}" +
                             $" (load it as {spec.CellType.TorchModule}(V, H, num_layers) + nn.Linear(H, V))");
            return 0;
        }));
        return cmd;
    }
}
