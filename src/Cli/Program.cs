using System.CommandLine;
using System.Text;
using CharRnn.Rnn;

namespace CharRnn.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        Console.OutputEncoding = new UTF8Encoding(false);
        using var cts = new CancellationTokenSource();
        // Ctrl+C: finish the current epoch, save a checkpoint if there is a checkpoint folder, then exit 130.
        Console.CancelKeyPress += (_, e) =>
        {
            if (cts.IsCancellationRequested) return; // a second Ctrl+C kills at once
            e.Cancel = true;
            cts.Cancel();
        };
        return Run(args, Console.Out, Console.Error, cts.Token);
    }

    /// <summary>Runs the CLI with the given writers (the tests call this in-process).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancel = default)
    {
        var root = new RootCommand("charrnn — character-level RNN language models (d2l ch. 6.4/6.5) on NVIDIA GPUs and CPUs.");
        root.Subcommands.Add(TrainCommand.Create(stdout, stderr, cancel));
        root.Subcommands.Add(InfoCommand.Create(stdout));
        root.Subcommands.Add(BenchCommand.Create(stdout, stderr));
        root.Subcommands.Add(GenerateCommand.Create(stdout, stderr));
        var parse = root.Parse(args);
        var config = new InvocationConfiguration { Output = stdout, Error = stderr };
        try
        {
            return parse.Invoke(config);
        }
        catch (CharRnnException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 2;
        }
    }

    /// <summary>Runs an action, turning user errors into one line on stderr and exit code 2.</summary>
    internal static int Guard(TextWriter stderr, Func<int> action)
    {
        try
        {
            return action();
        }
        catch (CharRnnException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine("interrupted");
            return 130;
        }
    }
}
