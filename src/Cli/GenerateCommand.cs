using System.CommandLine;
using System.Globalization;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Generation;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Devices;

namespace CharRnn.Cli;

internal static class GenerateCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr, CancellationToken cancel = default)
    {
        var checkpoint = new Option<string?>("--checkpoint") { Description = "A checkpoint written by charrnn train --checkpoint-dir, or that folder (its latest)." };
        var modelFile = new Option<string?>("--model") { Description = "A model in PyTorch's layout, a .safetensors file (charrnn export writes them; so can PyTorch)." };
        var prefix = new Option<string?>("--prefix") { Description = "Text to start from (default: the run's first prediction prefix, e.g. 分开)." };
        var length = new Option<int>("--length") { Description = "Characters to generate after the prefix.", DefaultValueFactory = _ => 500 };
        var temperature = new Option<double>("--temperature") { Description = "Sample from softmax(logits / T) (default 1, as char-rnn); 0 is the book's greedy prediction.", DefaultValueFactory = _ => 1.0 };
        var topK = new Option<int?>("--top-k") { Description = "Sample only among the K most likely characters." };
        var seed = new Option<ulong>("--seed") { Description = "Random seed for sampling (the same seed gives the same text).", DefaultValueFactory = _ => 0UL };
        var count = new Option<int>("--count") { Description = "Number of samples, one per line.", DefaultValueFactory = _ => 1 };
        var device = CommonOptions.Device();
        var cmd = new Command("generate", "Generate text from a saved model: sampled (temperature 1 by default), or greedy with --temperature 0.");
        foreach (var o in new Option[] { checkpoint, modelFile, prefix, length, temperature, topK, seed, count, device }) cmd.Options.Add(o);
        cmd.SetAction(pr => Program.Guard(stderr, () =>
        {
            int len = pr.GetValue(length), n = pr.GetValue(count);
            double t = pr.GetValue(temperature);
            var k = pr.GetValue(topK);
            if (len < 0) throw new CharRnnException($"--length must be zero or more (got {len}).");
            if (n < 1) throw new CharRnnException($"--count must be at least 1 (got {n}).");
            if (!(t >= 0) || double.IsInfinity(t)) throw new CharRnnException($"--temperature must be 0 or a positive number (got {t.ToString(CultureInfo.InvariantCulture)}).");
            if (k is < 1) throw new CharRnnException($"--top-k must be at least 1 (got {k}).");
            if (t == 0 && k != null) throw new CharRnnException("--top-k chooses among the likeliest characters when sampling; --temperature 0 is greedy (always the likeliest). Give a temperature above 0, or drop --top-k.");
            if (t == 0 && n > 1) throw new CharRnnException($"--temperature 0 is greedy: all {n} samples would be the same text. Give a temperature above 0 (e.g. 0.8), or --count 1.");
            var (ckPath, modelPath) = (pr.GetValue(checkpoint), pr.GetValue(modelFile));
            if ((ckPath == null) == (modelPath == null))
                throw new CharRnnException("Give the model to generate from: --checkpoint FILE|DIR (charrnn train's) or --model FILE.safetensors, one of them.");
            var m = modelPath != null ? TorchFormat.Import(modelPath) : PortableModel.Of(Checkpoint.Load(CheckpointFolder.Resolve(ckPath!, "--checkpoint")));
            var vocab = m.Vocabulary;
            var text = pr.GetValue(prefix) ?? m.Prefix ?? vocab.Decode([0]);
            var ids = vocab.Encode(text, "The prefix");
            using var be = BackendFactory.Create(pr.GetValue(device)!, null, stderr, activity: "generating");
            using var model = new RnnModel(be, m.Parameters);
            using var sampler = new TextSampler(model);
            var rng = new Rng(pr.GetValue(seed));
            for (int i = 0; i < n; i++)
            {
                // Streamed: the prefix, then each character as it is drawn.
                stdout.Write(text);
                sampler.Stream(ids, len, t, k, rng, token => // a signal stops it at the next character
                {
                    cancel.ThrowIfCancellationRequested();
                    stdout.Write(vocab.Decode([token]));
                    stdout.Flush();
                });
                stdout.WriteLine();
            }
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
