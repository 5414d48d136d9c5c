using System.CommandLine;
using CharRnn.Rnn.Backends;

namespace CharRnn.Cli;

internal static class InfoCommand
{
    public static Command Create(TextWriter stdout)
    {
        var cmd = new Command("info", "Show the CPU GEMM engine and the GPU (driver, device, cuBLAS, NVRTC) or why there is none.");
        cmd.SetAction(_ =>
        {
            foreach (var line in BackendFactory.Info()) stdout.WriteLine(line);
            return 0;
        });
        return cmd;
    }
}
