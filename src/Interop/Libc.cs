using System.Runtime.InteropServices;

namespace CharRnn.Interop;

/// <summary>
/// The few POSIX calls .NET has no API for (glibc, Linux): <c>fsync</c> of a directory, so a rename that published a
/// checkpoint survives a power loss; <c>flock</c> of a directory, so two runs cannot share a checkpoint folder; and
/// <c>stat</c>, to tell a regular file from a device or a pipe; <c>setenv</c>, for MPI's transport settings.
/// </summary>
public static unsafe partial class Libc
{
    const string Lib = "libc.so.6"; // glibc's soname (plain "libc.so" is a linker script)

    public const int O_RDONLY = 0;
    public const int O_DIRECTORY = 0x10000; // Linux (x86-64 and arm64)
    public const int O_CLOEXEC = 0x80000;

    [LibraryImport(Lib, SetLastError = true)] public static partial int open(byte* pathname, int flags);
    [LibraryImport(Lib, SetLastError = true)] public static partial int fsync(int fd);
    [LibraryImport(Lib, SetLastError = true)] public static partial int close(int fd);
    public const int LOCK_EX = 2, LOCK_NB = 4;
    [LibraryImport(Lib, SetLastError = true)] public static partial int flock(int fd, int operation);
    /// <summary><c>struct stat</c> is 144 bytes on x86-64 (st_mode at offset 24) and 128 on arm64 (st_mode at 16).</summary>
    [LibraryImport(Lib, SetLastError = true)] public static partial int stat(byte* pathname, byte* statbuf);
    /// <summary>The native environment (what MPI reads; .NET's Environment.SetEnvironmentVariable does not reach it).</summary>
    [LibraryImport(Lib, SetLastError = true)] public static partial int setenv(byte* name, byte* value, int overwrite);
}
