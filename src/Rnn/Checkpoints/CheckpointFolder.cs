using System.Text;
using CharRnn.Interop;

namespace CharRnn.Rnn.Checkpoints;

/// <summary>
/// A run's <c>--checkpoint-dir</c>, held for the run: created if missing, cleared of the temp files that killed saves
/// left behind, and locked (flock(2) on the folder itself, which the kernel releases even when the process is killed),
/// so two runs never overwrite each other's checkpoints in one folder.
/// </summary>
public sealed class CheckpointFolder : IDisposable
{
    int _fd;

    CheckpointFolder(string path, int fd, int removedTemps)
    {
        Path = path;
        _fd = fd;
        RemovedTemps = removedTemps;
    }

    public string Path { get; }

    /// <summary>How many stale temp files opening the folder deleted.</summary>
    public int RemovedTemps { get; }

    public string FileFor(int epoch) => System.IO.Path.Combine(Path, $"epoch-{epoch:D5}.ckpt");

    public static unsafe CheckpointFolder Open(string path)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new CharRnnException("--checkpoint-dir is empty. Name a folder (it is created if missing).");
        try
        {
            Directory.CreateDirectory(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new CharRnnException($"Cannot create the checkpoint folder {path}: {e.Message}", e);
        }
        int fd = -1;
        if (OperatingSystem.IsLinux())
        {
            var z = Encoding.UTF8.GetBytes(System.IO.Path.GetFullPath(path) + "\0");
            fixed (byte* p = z) fd = Libc.open(p, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC);
            if (fd < 0) throw new CharRnnException($"Cannot open the checkpoint folder {path} (errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}).");
            if (Libc.flock(fd, Libc.LOCK_EX | Libc.LOCK_NB) != 0)
            {
                Libc.close(fd);
                throw new CharRnnException($"Another charrnn run is writing checkpoints to {path}. Wait for it to finish, or choose another --checkpoint-dir.");
            }
        }
        return new CheckpointFolder(path, fd, AtomicFile.RemoveStaleTemps(path));
    }

    public void Dispose()
    {
        if (_fd >= 0) Libc.close(_fd);
        _fd = -1;
    }
}
