using System.Diagnostics;

namespace CharRnn.Rnn.Backends;

/// <summary>
/// Wall time per backend op, for <c>charrnn bench --profile</c>: set <see cref="IBackend.Profiler"/> and every op
/// (the CPU backend's ops; the CUDA backend's kernel launches by kernel name, GEMMs by shape, memsets and copies) is
/// timed until the backend has synchronised after it — device time plus launch overhead. Only the outermost op of a
/// nest counts (an op built of others is timed once). Profiling makes the CPU backend's <see cref="IBackend.Overlap"/>
/// sequential, so each op's time is its own.
/// </summary>
public sealed class OpProfiler
{
    readonly Dictionary<string, (double Seconds, long Calls)> _times = new();
    readonly Lock _gate = new();
    [ThreadStatic] static int t_depth;

    public IReadOnlyDictionary<string, (double Seconds, long Calls)> Times
    {
        get { lock (_gate) return new Dictionary<string, (double, long)>(_times); }
    }

    public void Reset()
    {
        lock (_gate) _times.Clear();
    }

    /// <summary>Starts timing <paramref name="op"/>; disposing the scope synchronises and records it.</summary>
    public Scope Begin(string op, IBackend backend)
    {
        t_depth++;
        return new Scope(this, op, backend, Stopwatch.GetTimestamp());
    }

    void End(string op, IBackend backend, long start)
    {
        try
        {
            if (t_depth > 1) return;
            backend.Synchronize();
            double s = Stopwatch.GetElapsedTime(start).TotalSeconds;
            lock (_gate)
            {
                var (sum, calls) = _times.GetValueOrDefault(op);
                _times[op] = (sum + s, calls + 1);
            }
        }
        finally
        {
            t_depth--;
        }
    }

    /// <summary>A running measurement; the default value (no profiler) does nothing.</summary>
    public readonly struct Scope(OpProfiler? profiler, string op, IBackend? backend, long start) : IDisposable
    {
        public void Dispose() => profiler?.End(op, backend!, start);
    }
}
