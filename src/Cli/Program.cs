using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text;
using CharRnn.Rnn;
using CharRnn.Rnn.Distributed;

namespace CharRnn.Cli;

public static class Program
{
    /// <summary>Set when SIGTERM asked the run to stop (it then exits 143 after the same save Ctrl+C makes).</summary>
    static volatile bool s_terminated;

    public static int Main(string[] args)
    {
        Console.OutputEncoding = new UTF8Encoding(false);
        // Each stderr line in one write(2): the console's writer flushes every 256 characters, and under an MPI launcher
        // the ranks' error lines (one each, several hundred characters) came out spliced into each other mid-word.
        // Writes up to PIPE_BUF (4 KiB) reach a pipe whole.
        Console.SetError(new StreamWriter(Console.OpenStandardError(), new UTF8Encoding(false), bufferSize: 4096) { AutoFlush = true });
        using var cts = new CancellationTokenSource();
        // Ctrl+C: finish the current epoch, save a checkpoint if there is a checkpoint folder, then exit 130.
        Console.CancelKeyPress += (_, e) =>
        {
            if (cts.IsCancellationRequested) // a second Ctrl+C kills at once, saying so (it was silent)
            {
                Console.Error.WriteLine("charrnn: stopped at once (a second Ctrl+C); checkpoints already written are intact.");
                return;
            }
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
        // mpiexec -n N charrnn train …: this process is one rank (MPI from the launcher's environment); alone, the only one.
        ICollective ranks;
        try { ranks = Launch.Detect(MpiChoice(args)); }
        catch (CharRnnException e)
        {
            Console.Error.WriteLine($"error: {CliErrors.Sentence(CliErrors.OneLine(e.Message))}");
            return CliErrors.Usage;
        }
        using var finalize = ranks;
        // Only rank 0 speaks; the others print nothing but their own errors, marked with their rank.
        var (stdout, stderr) = ranks.Rank == 0 ? (Console.Out, Console.Error)
            : (TextWriter.Null, (TextWriter)new RankErrors(Console.Error, ranks.Rank));
        int code = Run(args, stdout, stderr, cts.Token, ranks);
        (stderr as RankErrors)?.Release(s_alike);
        if (code == 130 && s_terminated) code = 143;
        // The others must not wait on a rank that left; an error every rank found alike before any collective ends each
        // of them already (MPI_Finalize, without the launcher's abort line).
        if (code != 0 && code != 130 && code != 143 && ranks is MpiRanks mpi && !s_alike) mpi.Abort(code);
        // An interrupted job: every rank stopped at the same boundary and the save gathered from all of them, so rank 0
        // ends the job with the signal's code. Hydra's own exit code after it forwarded a signal is not that: with every
        // rank exiting 130 it still exited 0 in most runs.
        if (code is 130 or 143 && ranks is MpiRanks { Size: > 1, Rank: 0 } job)
        {
            Console.Out.Flush();
            Console.Error.Flush();
            job.Abort(code);
        }
        return code;
    }

    /// <summary>train's --mpi, read before the command line is parsed: MPI starts before anything else.</summary>
    static string? MpiChoice(string[] args)
    {
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--mpi" && i + 1 < args.Length) return args[i + 1];
            if (args[i].StartsWith("--mpi=", StringComparison.Ordinal)) return args[i]["--mpi=".Length..];
        }
        return null;
    }

    /// <summary>A non-zero rank's stderr: only "error:" lines, prefixed with the rank, written when the run returns
    /// (an error line is a run's last word) unless every rank found the error alike: rank 0 says it once.</summary>
    sealed class RankErrors(TextWriter inner, int rank) : TextWriter
    {
        readonly StringBuilder _line = new();
        readonly List<string> _errors = [];
        public override Encoding Encoding => inner.Encoding;

        public override void Write(char value)
        {
            if (value != '\n') { _line.Append(value); return; }
            var line = _line.ToString();
            _line.Clear();
            if (line.StartsWith("error:", StringComparison.Ordinal)) _errors.Add($"rank {rank}: {line}");
        }

        public void Release(bool alike)
        {
            if (!alike) foreach (var e in _errors) inner.WriteLine(e);
            _errors.Clear();
        }
    }

    /// <summary>Runs the CLI with the given writers (the tests call this in-process).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancel = default, ICollective? ranks = null)
    {
        s_alike = false;
        var root = new RootCommand("charrnn — character-level RNN language models (d2l ch. 6.4/6.5) on NVIDIA GPUs and CPUs.");
        root.Subcommands.Add(TrainCommand.Create(stdout, stderr, cancel, ranks ?? SingleRank.Instance));
        root.Subcommands.Add(InfoCommand.Create(stdout));
        root.Subcommands.Add(BenchCommand.Create(stdout, stderr, cancel));
        root.Subcommands.Add(GenerateCommand.Create(stdout, stderr, cancel));
        root.Subcommands.Add(ExportCommand.Create(stdout, stderr));
        var config = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false };
        try
        {
            var parse = root.Parse(args);
            bool help = parse.Action is System.CommandLine.Help.HelpAction;
            if (parse.Errors.Count > 0 && !help)
            {
                stderr.WriteLine(CliErrors.DescribeParseError(parse));
                s_alike = true; // the same command line on every rank
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
            s_alike = e is AlikeOnEveryRankException;
            var (line, exit) = CliErrors.Describe(e);
            stderr.WriteLine(line);
            return exit;
        }
    }

    /// <summary>The last run's error was found alike by every rank before any collective (no MPI_Abort needed).</summary>
    [ThreadStatic] static bool s_alike;
}

/// <summary>A run that stopped on an error after it started: the error, and what the user should know about the run
/// (where its last checkpoint is).</summary>
internal sealed class RunFailedException(Exception inner, string? hint) : Exception(inner.Message, inner)
{
    public string? Hint { get; } = hint;
}
