using System.CommandLine;
using CharRnn.Rnn.Devices;
using CharRnn.Rnn.Distributed;

namespace CharRnn.Cli;

internal static class InfoCommand
{
    public static Command Create(TextWriter stdout)
    {
        var cmd = new Command("info", "Show the CPU GEMM engine and the GPU (driver, device, cuBLAS, NVRTC) or why there is none.");
        cmd.SetAction(_ =>
        {
            foreach (var line in BackendFactory.Info()) stdout.WriteLine(line);
            stdout.WriteLine("MPI: " + MpiRanks.LibraryVersion());
            stdout.WriteLine("NCCL: " + NcclRanks.Version());
            return 0;
        });
        return cmd;
    }
}
