using System.Diagnostics;

namespace CharRnn.Tests;

/// <summary>
/// Runs <c>charrnn</c> as a child process (the apphost next to the test exe): for what an in-process run cannot show —
/// signals, kill -9, a native library chosen by environment variables, the exit code a shell sees.
/// </summary>
public static class CliProcess
{
    public static string Executable => Path.Combine(AppContext.BaseDirectory, "charrnn");

    public static Process Start(IEnumerable<string> args, IReadOnlyDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(Executable)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            StandardOutputEncoding = System.Text.Encoding.UTF8, StandardErrorEncoding = System.Text.Encoding.UTF8,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["CHARRNN_KERNEL_CACHE"] = "off";
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        return Process.Start(psi)!;
    }

    /// <summary>Runs to the end (killed after <paramref name="timeoutSeconds"/>, which fails the test): exit code, stdout, stderr.</summary>
    public static (int Code, string Out, string Err) Run(IEnumerable<string> args, IReadOnlyDictionary<string, string>? env = null, int timeoutSeconds = 300)
    {
        using var p = Start(args, env);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"charrnn {string.Join(" ", args)} did not finish in {timeoutSeconds} s (a hang). stderr so far: {Tail(stderr)}");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    static string Tail(Task<string> t) => t.IsCompleted ? t.Result : "(still reading)";

    /// <summary>Waits up to <paramref name="seconds"/> for <paramref name="p"/> to end; kills it (and its children) if it
    /// does not, so a hang fails the test instead of outliving it. Returns whether it ended by itself.</summary>
    public static bool Ended(Process p, int seconds)
    {
        bool ended = p.WaitForExit(seconds * 1000);
        if (!ended) p.Kill(entireProcessTree: true);
        return ended;
    }

    /// <summary>Sends a signal by number (kill(1)): .NET's Process.Kill only sends SIGKILL.</summary>
    public static void Signal(Process p, int signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", $"-{signal} {p.Id}") { UseShellExecute = false })!;
        kill.WaitForExit();
    }

    /// <summary>Asserts the stderr of a failed run is exactly one "error:" line (plus the informational "charrnn:" lines), no trace.</summary>
    public static string OneErrorLine(string stderr)
    {
        Assert.That(stderr, Does.Not.Contain("   at "), "no stack trace");
        var errors = stderr.Split('\n').Where(l => l.StartsWith("error:")).ToList();
        Assert.That(errors, Has.Count.EqualTo(1), stderr);
        return errors[0];
    }
}
