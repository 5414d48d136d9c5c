using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.RegularExpressions;
using CharRnn.Cuda;
using CharRnn.Rnn;

namespace CharRnn.Cli;

/// <summary>
/// Turns whatever stops a command into one line on stderr that starts with "error:" and names the problem and the way
/// out, and an exit code: 2 for input the user can fix (bad options, bad files, no GPU), 3 for a GPU failure, 70 for a
/// bug (with the details written to a crash log, never a stack trace on the terminal).
/// </summary>
public static class CliErrors
{
    public const int Usage = 2, Gpu = 3, Bug = 70;

    /// <summary>The text with exactly one full stop at its end.</summary>
    public static string Sentence(string text) => text.TrimEnd().TrimEnd('.') + ".";

    /// <summary>Collapses a possibly multi-line message (an NVRTC log, a driver string) to one line.</summary>
    public static string OneLine(string message) => Regex.Replace(message.Trim(), @"\s*\n\s*", " | ");

    /// <summary>The line and exit code for an exception; <paramref name="hint"/> (e.g. where the last checkpoint is) is appended.</summary>
    public static (string Line, int Exit) Describe(Exception e, string? hint = null)
    {
        string tail = hint is { Length: > 0 } ? " " + hint : "";
        switch (e)
        {
            case GpuFailedException:
                return ($"error: {Sentence(OneLine(e.Message))}{tail}", Gpu);
            case CharRnnException:
                return ($"error: {Sentence(OneLine(e.Message))}{tail}", Usage);
            case CudaException c when c.DriverStatus == Interop.CUresult.CUDA_ERROR_OUT_OF_MEMORY:
                return ($"error: {Sentence(OneLine(c.Message))}{tail}", Gpu); // DeviceBuffer's message names the size and the fixes
            case CudaException c when c.Message.Contains("ALLOC_FAILED"):
                return ($"error: the GPU ran out of memory ({OneLine(c.Message)}). Use a smaller --hidden, --batch or --steps, or --device cpu.{tail}", Gpu);
            case CudaException c:
                return ($"error: the GPU failed: {OneLine(c.Message)}. `charrnn info` shows the driver and device; --device cpu trains without the GPU.{tail}", Gpu);
            case OutOfMemoryException:
                return ($"error: out of host memory. Use a smaller --hidden, --batch, --layers or --chars.{tail}", Usage);
            default:
                var log = WriteCrashLog(e);
                return ($"error: internal error ({e.GetType().Name}: {OneLine(e.Message)}). This is a bug in charrnn; " +
                        $"{(log != null ? $"the details are in {log}" : "rerun to reproduce it")} — please report it.{tail}", Bug);
        }
    }

    static string? WriteCrashLog(Exception e)
    {
        try
        {
            var path = Path.Combine(Path.GetTempPath(), $"charrnn-crash-{Environment.ProcessId}-{DateTime.UtcNow:yyyyMMddHHmmss}.log");
            // CreateNew: in a shared temp folder, never write through a file or link someone else put at that name.
            using (var w = new StreamWriter(new FileStream(path, FileMode.CreateNew, FileAccess.Write)))
                w.Write($"charrnn {Environment.CommandLine}\n{DateTime.UtcNow:O}\n{e}\n");
            return path;
        }
        catch (Exception)
        {
            return null; // a crash log is a courtesy; failing to write it must not hide the error line
        }
    }

    /// <summary>One line for the first parse error of a command line (unknown option, bad value, missing value).</summary>
    public static string DescribeParseError(ParseResult parse)
    {
        // An unknown token explains the other errors it causes (a missing command, a stray value): report it first.
        var error = parse.Errors.FirstOrDefault(e => e.Message.StartsWith("Unrecognized", StringComparison.Ordinal)) ?? parse.Errors[0];
        var command = parse.CommandResult.Command;
        string help = command is RootCommand ? "charrnn --help" : $"charrnn {command.Name} --help";
        var m = Regex.Match(error.Message, @"^Unrecognized command or argument '(.*)'\.$");
        if (m.Success)
        {
            var token = m.Groups[1].Value;
            bool option = token.StartsWith('-');
            var names = option
                ? command.Options.SelectMany(o => o.Aliases.Prepend(o.Name)).Where(n => n.StartsWith('-'))
                : command.Subcommands.Select(c => c.Name);
            var close = Closest(token, names);
            return $"error: unknown {(option ? "option" : command is RootCommand ? "command" : "argument")} '{token}'" +
                   (close != null ? $"; did you mean {close}?" : ".") + $" ({help} lists them)";
        }
        var owner = error.SymbolResult switch
        {
            OptionResult o => o.Option,
            ArgumentResult { Parent: OptionResult o } => o.Option,
            _ => null,
        };
        m = Regex.Match(error.Message, @"^Argument '(.*)' not recognized\. Must be one of:");
        if (m.Success && owner != null)
        {
            var allowed = Regex.Matches(error.Message, @"'([^']*)'").Skip(1).Select(x => x.Groups[1].Value).ToList();
            var close = Closest(m.Groups[1].Value, allowed);
            return $"error: {owner.Name} {m.Groups[1].Value} is not one of {string.Join(", ", allowed)}" + (close != null ? $"; did you mean {close}?" : ".");
        }
        m = Regex.Match(error.Message, @"^Cannot parse argument '(.*)' for option '([^']*)'");
        if (m.Success)
            return $"error: {m.Groups[2].Value} expects {Expected(owner)} (got '{m.Groups[1].Value}').";
        m = Regex.Match(error.Message, @"^Option '([^']*)' expects a single argument but (\d+) were provided");
        if (m.Success) return $"error: {m.Groups[1].Value} is given {m.Groups[2].Value} times; give it once.";
        m = Regex.Match(error.Message, @"^Required argument missing for option: '([^']*)'");
        if (m.Success) return $"error: {m.Groups[1].Value} needs a value ({help}).";
        if (error.Message.StartsWith("Required command was not provided", StringComparison.Ordinal))
            return $"error: give a command: {string.Join(", ", command.Subcommands.Select(c => c.Name))} ({help}).";
        if (error.Message.StartsWith("Required argument missing for command", StringComparison.Ordinal) && command.Arguments.Count > 0)
            return $"error: {command.Name} needs {string.Join(" and ", command.Arguments.Select(a => a.Name))} ({help}: {command.Arguments[0].Description?.TrimEnd('.')}).";
        m = Regex.Match(error.Message, @"^Option '([^']*)' is required\.");
        if (m.Success) return $"error: {m.Groups[1].Value} is required ({help}).";
        return $"error: {OneLine(error.Message)} ({help})";
    }

    static string Expected(Option? o)
    {
        var t = o?.ValueType is Type vt ? Nullable.GetUnderlyingType(vt) ?? vt : null;
        if (t == typeof(int) || t == typeof(long)) return "a whole number";
        if (t == typeof(ulong) || t == typeof(uint)) return "a non-negative whole number";
        if (t == typeof(float) || t == typeof(double)) return "a number";
        return "a value of another form";
    }

    /// <summary>The candidate closest to <paramref name="token"/> by edit distance, if it is close enough to be a typo.</summary>
    public static string? Closest(string token, IEnumerable<string> candidates)
    {
        string? best = null;
        int bestD = int.MaxValue;
        foreach (var c in candidates.Distinct())
        {
            int d = Distance(token, c);
            if (d < bestD) { bestD = d; best = c; }
        }
        return best != null && bestD <= Math.Max(2, token.Length / 3) ? best : null;
    }

    static int Distance(string a, string b)
    {
        var prev = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            var cur = new int[b.Length + 1];
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            prev = cur;
        }
        return prev[b.Length];
    }
}
