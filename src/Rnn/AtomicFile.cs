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
        if (Stat(full) is { Kind: not FileKind.Regular } existing) // the rename below would replace a device, a pipe or a folder
            throw new CharRnnException($"Cannot write {path}: it is {Describe(existing.Kind)}, not a regular file. Name a regular file or a new path.");
        var tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(KillWhileWriting.Wrap(fs, full));
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
    public static void CheckWritable(string path, string flag, params (string? Path, string Flag)[] inputs)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new CharRnnException($"{flag} is empty. Name a file to write.");
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new CharRnnException($"{flag} {path} is not a usable path ({e.Message}).", e);
        }
        if (Directory.Exists(full)) throw new CharRnnException($"{flag} {path} is a folder. Name a file inside it.");
        CheckOutput(full, flag, inputs);
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

    static readonly Regex TempName = new(@"^\.(.+)\.(\d+)\.tmp$");

    /// <summary>
    /// Deletes the temp files <see cref="Write"/> left in <paramref name="dir"/> when its process was killed mid-write:
    /// those named <c>.TARGET.PID.tmp</c> whose PID no longer runs, whose TARGET <paramref name="ours"/> accepts and
    /// whose bytes begin with <paramref name="marker"/> (or with as much of it as a kill left). Nothing else is touched,
    /// whatever its name: the folder may hold a user's own files. Returns how many were deleted.
    /// </summary>
    public static int RemoveStaleTemps(string dir, Func<string, bool> ours, ReadOnlySpan<byte> marker)
    {
        int removed = 0;
        Span<byte> head = stackalloc byte[marker.Length];
        foreach (var f in Directory.EnumerateFiles(dir, ".*.tmp"))
        {
            var m = TempName.Match(Path.GetFileName(f));
            if (!m.Success || !ours(m.Groups[1].Value) || !int.TryParse(m.Groups[2].Value, out int pid) || pid == Environment.ProcessId || ProcessRuns(pid))
                continue;
            try
            {
                if (!IsRegularFile(f)) continue;
                int got;
                using (var fs = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.ReadWrite)) got = fs.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
                if (!head[..got].SequenceEqual(marker[..got])) continue; // not what Write wrote for this folder's owner
                File.Delete(f);
                removed++;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return removed;
    }

    static bool ProcessRuns(int pid) => OperatingSystem.IsLinux() ? Directory.Exists($"/proc/{pid}") : true;

    /// <summary>True when <paramref name="path"/> is a regular file (not a folder, device, pipe or socket).</summary>
    public static bool IsRegularFile(string path) => Stat(path)?.Kind == FileKind.Regular;

    /// <summary>
    /// What <paramref name="path"/> names, following symbolic links: its kind and its identity (device and inode: two
    /// paths are one file when both match, whatever the names, links or hard links), or null when nothing is there.
    /// stat(2) on Linux (st_dev and st_ino lead <c>struct stat</c> on x86-64 and arm64 alike); elsewhere the kind from
    /// .NET and the full path as identity.
    /// </summary>
    public static unsafe FileStat? Stat(string path)
    {
        if (!OperatingSystem.IsLinux())
            return File.Exists(path) ? new FileStat(FileKind.Regular, 0, 0, Path.GetFullPath(path))
                 : Directory.Exists(path) ? new FileStat(FileKind.Directory, 0, 0, Path.GetFullPath(path)) : null;
        var z = Encoding.UTF8.GetBytes(path + "\0");
        var buf = stackalloc byte[256];
        fixed (byte* p = z)
            if (Libc.stat(p, buf) != 0) return null;
        int modeOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        uint mode = *(uint*)(buf + modeOffset);
        var kind = (mode & 0xF000) switch // S_IFMT
        {
            0x8000 => FileKind.Regular, 0x4000 => FileKind.Directory, 0x1000 => FileKind.Pipe,
            0x2000 => FileKind.CharacterDevice, 0x6000 => FileKind.BlockDevice, 0xC000 => FileKind.Socket, _ => FileKind.Other,
        };
        return new FileStat(kind, *(ulong*)buf, *(ulong*)(buf + 8), null);
    }

    /// <summary>
    /// The output-path policy: <paramref name="path"/> (given as <paramref name="flag"/>) may be written only if it is a
    /// new path or a regular file, and not the same file as any of the run's <paramref name="inputs"/> (compared by
    /// identity, so another name, a symbolic or a hard link of an input is refused too). Outputs are written by renaming
    /// a new file over the path, which would replace a device or a pipe and destroy an input.
    /// </summary>
    public static void CheckOutput(string path, string flag, params (string? Path, string Flag)[] inputs)
    {
        if (Stat(path) is not { } st) return;
        if (st.Kind != FileKind.Regular)
            throw new CharRnnException($"{flag} {path} is {Describe(st.Kind)}, not a regular file: writing it would replace it. Name a regular file or a new path.");
        foreach (var (input, inputFlag) in inputs)
            if (input != null && Stat(input) is { } other && other.SameFileAs(st))
                throw new CharRnnException($"{flag} {path} is the same file as {inputFlag} {input}: writing it would destroy the run's input. Name another file.");
    }

    /// <summary>
    /// The input-path policy: a path that exists but is a pipe, a device or a socket is refused before it is opened
    /// (opening a FIFO blocks until a writer comes; a device may never end).
    /// </summary>
    public static void CheckInput(string path, string what)
    {
        if (Stat(path) is { Kind: not (FileKind.Regular or FileKind.Directory) } st)
            throw new CharRnnException($"{what} {path} is {Describe(st.Kind)}: reading it could block or never end. Pass a regular file.");
    }

    static string Describe(FileKind kind) => kind switch
    {
        FileKind.Directory => "a folder",
        FileKind.Pipe => "a named pipe (FIFO)",
        FileKind.CharacterDevice => "a character device",
        FileKind.BlockDevice => "a block device",
        FileKind.Socket => "a socket",
        _ => "not a regular file",
    };
}

public enum FileKind { Regular, Directory, Pipe, CharacterDevice, BlockDevice, Socket, Other }

/// <summary>A path's kind and identity (<see cref="AtomicFile.Stat"/>).</summary>
public readonly record struct FileStat(FileKind Kind, ulong Device, ulong Inode, string? FullPath)
{
    public bool SameFileAs(FileStat other) =>
        FullPath != null || other.FullPath != null ? string.Equals(FullPath, other.FullPath, StringComparison.Ordinal)
                                                   : Device == other.Device && Inode == other.Inode;
}

/// <summary>
/// A fault for tests, like the CUDA emulator's: <c>CHARRNN_TEST_KILL_WRITING=NAME:BYTES</c> kills this process
/// (SIGKILL, as <c>kill -9</c>) once BYTES bytes of the file NAME have reached its temp file — a kill inside a save,
/// exactly there, instead of a timer's luck. Unset (always, outside tests), writes go straight to the file.
/// </summary>
internal static class KillWhileWriting
{
    public const string Variable = "CHARRNN_TEST_KILL_WRITING";

    public static Stream Wrap(Stream file, string fullPath)
    {
        if (Environment.GetEnvironmentVariable(Variable) is not { Length: > 0 } spec) return file;
        int colon = spec.LastIndexOf(':');
        if (colon < 1 || !long.TryParse(spec[(colon + 1)..], out long bytes) || spec[..colon] != Path.GetFileName(fullPath)) return file;
        return new Killer(file, bytes);
    }

    sealed class Killer(Stream inner, long limit) : Stream
    {
        long _written;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _written;
        public override long Position { get => _written; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            int take = (int)Math.Min(buffer.Length, limit - _written);
            inner.Write(buffer[..take]);
            _written += take;
            if (_written < limit) return;
            inner.Flush(); // the temp file holds exactly the bytes written so far, as a kill -9 would leave them
            System.Diagnostics.Process.GetCurrentProcess().Kill();
            Thread.Sleep(Timeout.Infinite);
        }
    }
}
