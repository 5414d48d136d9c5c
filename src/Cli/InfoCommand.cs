using System.CommandLine;
using System.Globalization;
using CharRnn.Rnn.Backends.Cuda;
using CharRnn.Rnn.Devices;
using CharRnn.Rnn.Distributed;

namespace CharRnn.Cli;

internal static class InfoCommand
{
    public static Command Create(TextWriter stdout)
    {
        var cmd = new Command("info", "Show the CPU GEMM engine and the GPU (driver, device, cuBLAS, NVRTC) or why there is none.");
        var plans = new Option<bool>("--plans") { Description = "Also list the recurrence plans timed on this machine (--recurrence auto's cache: the plan chosen per card and layer shape, and every plan's time)." };
        cmd.Options.Add(plans);
        cmd.SetAction(r =>
        {
            foreach (var line in BackendFactory.Info()) stdout.WriteLine(line);
            stdout.WriteLine("MPI: " + MpiRanks.LibraryVersion());
            stdout.WriteLine("NCCL: " + NcclRanks.Version());
            if (r.GetValue(plans)) WritePlans(stdout);
            return 0;
        });
        return cmd;
    }

    static void WritePlans(TextWriter stdout)
    {
        if (PlanCache.FilePath() is not string path)
        {
            stdout.WriteLine("recurrence plans: not cached (CHARRNN_PLAN_CACHE=off); --recurrence auto times them on every run");
            return;
        }
        var all = PlanCache.ReadAll();
        stdout.WriteLine($"recurrence plans: {all.Count} in {path}{(all.Count == 0 ? " (none timed yet: a GPU run with --recurrence auto times them)" : "")}");
        foreach (var (key, e) in all.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            stdout.WriteLine($"  {key}");
            stdout.WriteLine($"    runs {e.Plan} (timed {e.When}): " +
                string.Join(", ", e.Timings.Select(t => $"{t.Plan} {t.Micros.ToString("0.0", CultureInfo.InvariantCulture)} µs")) + " a step");
        }
    }
}
