using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using CharRnn.Interop;
using CharRnn.Rnn.Training;

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

    /// <summary>
    /// The file for a save: <c>epoch-00012.ckpt</c> at the end of epoch 12, <c>epoch-00013-mb-000500.ckpt</c> 500
    /// minibatches into epoch 13, with <c>-val-4.123456</c> added when a validation perplexity is known.
    /// </summary>
    public string FileFor(SavePoint p)
    {
        var name = p.AtEpochEnd ? $"epoch-{p.Epoch:D5}" : $"epoch-{p.Epoch:D5}-mb-{p.Minibatch:D6}";
        if (p.ValPerplexity is double v) name += string.Create(CultureInfo.InvariantCulture, $"-val-{v:F6}");
        return System.IO.Path.Combine(Path, name + ".ckpt");
    }

    public const string Latest = "latest.ckpt", Best = "best.ckpt";

    /// <summary>
    /// After <paramref name="file"/> was written: <c>latest.ckpt</c> points at it, and <c>best.ckpt</c> too when its
    /// validation perplexity is the lowest so far (symbolic links, replaced atomically). Returns whether it is the best.
    /// </summary>
    double? _bestExact;

    public bool Published(string file, double? valPerplexity)
    {
        Link(Latest, file);
        if (valPerplexity is not double v) return false;
        var best = System.IO.Path.Combine(Path, Best);
        // The exact value this run linked last; a folder's earlier best (a resume) only by its name, rounded: exact
        // values are compared with exact values, so an equal value never counts as better.
        double? current = _bestExact ?? (File.Exists(best) ? ValOf(File.ResolveLinkTarget(best, false)?.Name ?? "") : null);
        if (current is double b && b <= v) return false;
        Link(Best, file);
        _bestExact = v;
        return true;
    }

    /// <summary>
    /// --keep-last N: deletes all but the <paramref name="n"/> newest checkpoint files (by epoch, then minibatch), never
    /// the targets of <c>latest.ckpt</c> and <c>best.ckpt</c> (the best stays however old it is). Returns what it deleted.
    /// </summary>
    public IReadOnlyList<string> KeepLast(int n)
    {
        var kept = new HashSet<string>(StringComparer.Ordinal);
        foreach (var link in new[] { Latest, Best })
            if (File.ResolveLinkTarget(System.IO.Path.Combine(Path, link), false)?.Name is string target) kept.Add(target);
        var files = ByPosition(Path).Reverse().ToList();
        var deleted = new List<string>();
        foreach (var f in files.Skip(n).Where(f => !kept.Contains(System.IO.Path.GetFileName(f))))
        {
            try { File.Delete(f); deleted.Add(f); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CharRnnException($"--keep-last: cannot delete the old checkpoint {f}: {e.Message}", e);
            }
        }
        return deleted;
    }

    void Link(string name, string target)
    {
        var link = System.IO.Path.Combine(Path, name);
        var tmp = System.IO.Path.Combine(Path, $".{name}.{Environment.ProcessId}.tmp");
        try
        {
            File.Delete(tmp);
            File.CreateSymbolicLink(tmp, System.IO.Path.GetFileName(target)); // relative: the folder can move
            File.Move(tmp, link, overwrite: true);                           // rename(2) replaces the old link at once
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CharRnnException($"Cannot update {link}: {e.Message}", e);
        }
    }

    // At most 10 digits of epoch (an int) and 18 of minibatch: longer digit runs are not names CharRnn writes (and
    // would overflow the parse that orders them).
    /// <summary>The checkpoint files (and links) CharRnn wrote in this folder, by name.</summary>
    public IEnumerable<string> Checkpoints() =>
        Directory.EnumerateFileSystemEntries(Path).Where(f => IsCheckpointName(System.IO.Path.GetFileName(f)) && !Directory.Exists(f)).Order(StringComparer.Ordinal);

    /// <summary>The names CharRnn gives the checkpoints it writes in a folder.</summary>
    public static bool IsCheckpointName(string fileName) => fileName is Latest or Best || Name.IsMatch(fileName);

    static readonly Regex Name = new(@"^epoch-(\d{5,10})(?:-mb-(\d{1,18}))?(?:-val-([0-9.]+))?\.ckpt$");

    static double? ValOf(string fileName) =>
        Name.Match(fileName) is { Success: true } m && m.Groups[3].Success && double.TryParse(m.Groups[3].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v)
            ? v : null;

    /// <summary>
    /// A checkpoint named on the command line: a file as it is, or a folder's latest checkpoint (its
    /// <c>latest.ckpt</c> link, else the furthest epoch and minibatch among its <c>epoch-*.ckpt</c> files).
    /// </summary>
    /// <summary>A folder's epoch-*.ckpt files by the run position they hold: epoch, then minibatch (an epoch's end last).</summary>
    static IEnumerable<string> ByPosition(string folder) => Directory.EnumerateFiles(folder, "epoch-*.ckpt")
        .Select(f => (File: f, M: Name.Match(System.IO.Path.GetFileName(f))))
        .Where(x => x.M.Success)
        .OrderBy(x => long.Parse(x.M.Groups[1].Value, CultureInfo.InvariantCulture))
        .ThenBy(x => x.M.Groups[2].Success ? long.Parse(x.M.Groups[2].Value, CultureInfo.InvariantCulture) : long.MaxValue)
        .Select(x => x.File);

    public static string Resolve(string pathOrFolder, string flag)
    {
        if (!Directory.Exists(pathOrFolder)) return pathOrFolder;
        var latest = System.IO.Path.Combine(pathOrFolder, Latest);
        if (File.Exists(latest)) return latest;
        var newest = ByPosition(pathOrFolder).LastOrDefault();
        return newest ?? throw new CharRnnException($"{flag} {pathOrFolder}: the folder holds no checkpoint (epoch-*.ckpt). Name a checkpoint file or a run's --checkpoint-dir.");
    }

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
        try
        {
            // Written only after the first epochs: a folder that refuses new files (read-only mount, permissions) must
            // be found now, not when the work is done. The probe is the temp file a save creates, created and removed.
            AtomicFile.CheckWritable(System.IO.Path.Combine(path, Latest), "--checkpoint-dir");
        }
        catch (CharRnnException)
        {
            if (fd >= 0) Libc.close(fd);
            throw;
        }
        return new CheckpointFolder(path, fd, AtomicFile.RemoveStaleTemps(path, IsCheckpointName, Checkpoint.FileMagic));
    }

    public void Dispose()
    {
        if (_fd >= 0) Libc.close(_fd);
        _fd = -1;
    }
}
