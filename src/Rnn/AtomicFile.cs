using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using CharRnn.Interop;

namespace CharRnn.Rnn;

/// <summary>
/// Writes a file so that readers see the old contents or the new, never half: a temp file <c>.NAME.PID.tmp</c> in the
/// same folder, flushed to disk, renamed over NAME, then the folder itself flushed (so the rename survives a power
/// loss). A kill between the two leaves the temp file; <see cref="RemoveStaleTemps"/> clears those of dead processes.
/// </summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string text) =>
        Write(path, s => { using var w = new StreamWriter(s, new UTF8Encoding(false), leaveOpen: true); w.Write(text); });

    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new CharRnnException($"Cannot write {path}: the folder {dir} does not exist.");
        var tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
            FlushFolder(dir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw new CharRnnException($"Cannot write {path}: {e.Message}", e);
        }
    }

    /// <summary>
    /// Checks, before a run starts, that <paramref name="path"/> can be written where <see cref="Write"/> will write it:
    /// a file name in an existing folder that accepts a new file. Throws naming <paramref name="flag"/> otherwise.
    /// </summary>
    public static void CheckWritable(string path, string flag)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new CharRnnException($"{flag} is empty. Name a file to write.");
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new CharRnnException($"{flag} {path} is not a usable path ({e.Message}).", e);
        }
        if (Directory.Exists(full)) throw new CharRnnException($"{flag} {path} is a folder. Name a file inside it.");
        var dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new CharRnnException($"{flag}: the folder {dir} does not exist. Create it first.");
        var probe = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (new FileStream(probe, FileMode.Create, FileAccess.Write, FileShare.None)) { }
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CharRnnException($"{flag}: cannot write in {dir} ({e.Message}).", e);
        }
    }

    /// <summary>fsync(2) on a folder: makes the renames in it durable. Best effort where the platform has no such call.</summary>
    public static unsafe void FlushFolder(string dir)
    {
        if (!OperatingSystem.IsLinux()) return;
        var z = Encoding.UTF8.GetBytes(dir + "\0");
        fixed (byte* p = z)
        {
            int fd = Libc.open(p, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC);
            if (fd < 0) return;
            Libc.fsync(fd);
            Libc.close(fd);
        }
    }

    static readonly Regex TempName = new(@"^\..+\.(\d+)\.tmp$");

    /// <summary>
    /// Deletes the temp files <see cref="Write"/> left in <paramref name="dir"/> when its process was killed mid-write
    /// (those whose PID no longer runs). Returns how many.
    /// </summary>
    public static int RemoveStaleTemps(string dir)
    {
        int removed = 0;
        foreach (var f in Directory.EnumerateFiles(dir, ".*.tmp"))
        {
            var m = TempName.Match(Path.GetFileName(f));
            if (!m.Success || !int.TryParse(m.Groups[1].Value, out int pid) || pid == Environment.ProcessId || ProcessRuns(pid)) continue;
            try { File.Delete(f); removed++; } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return removed;
    }

    static bool ProcessRuns(int pid) => OperatingSystem.IsLinux() ? Directory.Exists($"/proc/{pid}") : true;

    /// <summary>True when <paramref name="path"/> is a regular file (not a folder, device, pipe or socket).</summary>
    public static unsafe bool IsRegularFile(string path)
    {
        if (!OperatingSystem.IsLinux()) return File.Exists(path);
        var z = Encoding.UTF8.GetBytes(path + "\0");
        var buf = stackalloc byte[256];
        fixed (byte* p = z)
            if (Libc.stat(p, buf) != 0) return false;
        int modeOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        uint mode = *(uint*)(buf + modeOffset);
        return (mode & 0xF000) == 0x8000; // S_IFMT, S_IFREG
    }
}
