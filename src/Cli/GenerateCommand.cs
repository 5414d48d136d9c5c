using System.CommandLine;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Generation;
using CharRnn.Rnn.Model;

namespace CharRnn.Cli;

internal static class GenerateCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "A checkpoint written by charrnn train --checkpoint-dir.", Required = true };
        var prefix = new Option<string>("--prefix") { Description = "Text to start from.", DefaultValueFactory = _ => "分开" };
        var length = new Option<int>("--length") { Description = "Characters to generate after the prefix.", DefaultValueFactory = _ => 50 };
        var temperature = new Option<double>("--temperature") { Description = "0: the book's greedy prediction; otherwise sample from softmax(logits / T).", DefaultValueFactory = _ => 0.0 };
        var topK = new Option<int?>("--top-k") { Description = "Sample only among the K most likely characters." };
        var seed = new Option<ulong>("--seed") { Description = "Random seed for sampling (the same seed gives the same text).", DefaultValueFactory = _ => 0UL };
        var count = new Option<int>("--count") { Description = "Number of samples.", DefaultValueFactory = _ => 1 };
        var device = CommonOptions.Device();
        var cmd = new Command("generate", "Generate text from a saved model (greedy, or sampled with a temperature).");
        foreach (var o in new Option[] { checkpoint, prefix, length, temperature, topK, seed, count, device }) cmd.Options.Add(o);
        cmd.SetAction(pr => Program.Guard(stderr, () =>
        {
            int len = pr.GetValue(length), n = pr.GetValue(count);
            if (len < 0) throw new CharRnnException($"--length must be zero or more (got {len}).");
            if (n < 1) throw new CharRnnException($"--count must be at least 1 (got {n}).");
            var ck = Checkpoint.Load(pr.GetValue(checkpoint)!);
            var vocab = new Vocabulary(ck.Header.VocabChars.EnumerateRunes());
            var ids = vocab.Encode(pr.GetValue(prefix)!, "The prefix");
            using var be = BackendFactory.Create(pr.GetValue(device)!, null, stderr);
            using var model = new RnnModel(be, ck.Parameters());
            using var sampler = new TextSampler(model);
            var rng = new Rng(pr.GetValue(seed));
            for (int i = 0; i < n; i++)
                stdout.WriteLine(vocab.Decode(sampler.Sample(ids, len, pr.GetValue(temperature), pr.GetValue(topK), rng)));
            return 0;
        }));
        return cmd;
    }
}
