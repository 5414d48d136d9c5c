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
        var count = new Option<int>("--count") { Description = "Number of samples, one per line (see --separator and --json when samples hold line breaks).", DefaultValueFactory = _ => 1 };
        var separator = new Option<string?>("--separator") { Description = @"Text between samples instead of a line break, with \n, \t and \\ as escapes (e.g. '\n---\n'); the output still ends with a line break." };
        var json = new Option<bool>("--json") { Description = "One JSON object per sample and line: {\"sample\", \"seed\", \"temperature\", \"prefix\", \"text\"} (text includes the prefix)." };
        var device = CommonOptions.Device();
        var cmd = new Command("generate", "Generate text from a saved model: sampled (temperature 1 by default), or greedy with --temperature 0.");
        foreach (var o in new Option[] { checkpoint, modelFile, prefix, length, temperature, topK, seed, count, separator, json, device }) cmd.Options.Add(o);
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
            var sep = pr.GetValue(separator) is string s ? Unescape(s) : "\n";
            bool asJson = pr.GetValue(json);
            if (asJson && pr.GetValue(separator) != null) throw new CharRnnException("--json writes one object per line; --separator applies to plain text. Give one of them.");
            for (int i = 0; i < n; i++)
            {
                if (asJson)
                {
                    // A whole sample per line: its text cannot be split wrongly, whatever characters it holds.
                    var sb = new System.Text.StringBuilder(text);
                    sampler.Stream(ids, len, t, k, rng, token =>
                    {
                        cancel.ThrowIfCancellationRequested();
                        sb.Append(vocab.Decode([token]));
                    });
                    stdout.WriteLine(SampleJson(i + 1, pr.GetValue(seed), t, text, sb.ToString()));
                    stdout.Flush();
                    continue;
                }
                if (i > 0) stdout.Write(sep);
                // Streamed: the prefix, then each character as it is drawn.
                stdout.Write(text);
                sampler.Stream(ids, len, t, k, rng, token => // a signal stops it at the next character
                {
                    cancel.ThrowIfCancellationRequested();
                    stdout.Write(vocab.Decode([token]));
                    stdout.Flush();
                });
            }
            if (!asJson) stdout.WriteLine();
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }

    /// <summary>--separator's escapes: \n, \t and \\; any other backslash stays as it is.</summary>
    internal static string Unescape(string s)
    {
        var sb = new System.Text.StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && i + 1 < s.Length && s[i + 1] is 'n' or 't' or '\\')
            {
                sb.Append(s[++i] switch { 'n' => '\n', 't' => '\t', _ => '\\' });
                continue;
            }
            sb.Append(s[i]);
        }
        return sb.ToString();
    }

    /// <summary>One --json line; characters stay readable (not \uXXXX), JSON's own escapes aside.</summary>
    static string SampleJson(int sample, ulong seed, double temperature, string prefix, string text)
    {
        var buffer = new MemoryStream();
        using (var w = new System.Text.Json.Utf8JsonWriter(buffer, new System.Text.Json.JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteNumber("sample", sample);
            w.WriteNumber("seed", seed);
            w.WriteNumber("temperature", temperature);
            w.WriteString("prefix", prefix);
            w.WriteString("text", text);
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }
}
