using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text;
using CharRnn.Rnn;

namespace CharRnn.Cli;

public static class Program
{
    /// <summary>Set when SIGTERM asked the run to stop (it then exits 143 after the same save Ctrl+C makes).</summary>
    static volatile bool s_terminated;

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
        // SIGTERM (kill, a job scheduler): the same orderly stop, then exit 143; a second SIGTERM ends at once.
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx =>
        {
            if (cts.IsCancellationRequested) return;
            ctx.Cancel = true;
            s_terminated = true;
            cts.Cancel();
        });
        int code = Run(args, Console.Out, Console.Error, cts.Token);
        return code == 130 && s_terminated ? 143 : code;
    }

    /// <summary>Runs the CLI with the given writers (the tests call this in-process).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancel = default)
    {
        var root = new RootCommand("charrnn — character-level RNN language models (d2l ch. 6.4/6.5) on NVIDIA GPUs and CPUs.");
        root.Subcommands.Add(TrainCommand.Create(stdout, stderr, cancel));
        root.Subcommands.Add(InfoCommand.Create(stdout));
        root.Subcommands.Add(BenchCommand.Create(stdout, stderr));
        root.Subcommands.Add(GenerateCommand.Create(stdout, stderr));
        root.Subcommands.Add(ExportCommand.Create(stdout, stderr));
        var config = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false };
        try
        {
            var parse = root.Parse(args);
            bool help = parse.Action is System.CommandLine.Help.HelpAction;
            if (parse.Errors.Count > 0 && !help)
            {
                stderr.WriteLine(CliErrors.DescribeParseError(parse));
                return CliErrors.Usage;
            }
            return parse.Invoke(config);
        }
        catch (Exception e)
        {
            var (line, exit) = CliErrors.Describe(e);
            stderr.WriteLine(line);
            return exit;
        }
    }

    /// <summary>Runs an action, turning anything that stops it into one line on stderr (<see cref="CliErrors"/>).</summary>
    internal static int Guard(TextWriter stderr, Func<int> action)
    {
        try
        {
            return action();
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine("interrupted");
            return 130;
        }
        catch (RunFailedException e)
        {
            var (line, exit) = CliErrors.Describe(e.InnerException!, e.Hint);
            stderr.WriteLine(line);
            return exit;
        }
        catch (Exception e)
        {
            var (line, exit) = CliErrors.Describe(e);
            stderr.WriteLine(line);
            return exit;
        }
    }
}

/// <summary>A run that stopped on an error after it started: the error, and what the user should know about the run
/// (where its last checkpoint is).</summary>
internal sealed class RunFailedException(Exception inner, string? hint) : Exception(inner.Message, inner)
{
    public string? Hint { get; } = hint;
}
