using CharRnn.Interop;

namespace CharRnn.Cuda;

/// <summary>A non-blocking stream (does not synchronise with the legacy default stream).</summary>
public sealed unsafe class CudaStream : IDisposable
{
    readonly CudaContext _ctx;

    internal CudaStream(CudaContext ctx)
    {
        _ctx = ctx;
        ctx.Bind();
        IntPtr s;
        CudaCheck.ThrowIfFailed(CudaDriver.cuStreamCreate(&s, CudaDriver.CU_STREAM_NON_BLOCKING));
        Handle = s;
    }

    public IntPtr Handle { get; private set; }

    /// <summary>Work issued to this stream from now on waits for <paramref name="e"/>'s last recorded point (inside a
    /// graph capture: a fork into, or a join back to, the capturing stream).</summary>
    public void Wait(CudaEvent e)
    {
        _ctx.Bind();
        CudaCheck.ThrowIfFailed(CudaDriver.cuStreamWaitEvent(Handle, e.Handle, 0));
    }

    public void Synchronize()
    {
        _ctx.Bind();
        CudaCheck.ThrowIfFailed(CudaDriver.cuStreamSynchronize(Handle));
    }

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        _ctx.BindForCleanup();
        CudaDriver.cuStreamDestroy_v2(Handle);
        Handle = IntPtr.Zero;
    }
}

/// <summary>An event, for timing and for waiting on one point of a stream.</summary>
public sealed unsafe class CudaEvent : IDisposable
{
    readonly CudaContext _ctx;

    internal CudaEvent(CudaContext ctx, bool timing)
    {
        _ctx = ctx;
        ctx.Bind();
        IntPtr e;
        CudaCheck.ThrowIfFailed(CudaDriver.cuEventCreate(&e, timing ? CudaDriver.CU_EVENT_DEFAULT : CudaDriver.CU_EVENT_DISABLE_TIMING));
        Handle = e;
    }

    public IntPtr Handle { get; private set; }

    public void Record(CudaStream stream) => CudaCheck.ThrowIfFailed(CudaDriver.cuEventRecord(Handle, stream.Handle));

    public void Synchronize() => CudaCheck.ThrowIfFailed(CudaDriver.cuEventSynchronize(Handle));

    /// <summary>Whether the work before the recorded event is done, without waiting (a poll that can give up).</summary>
    public bool IsDone()
    {
        var r = CudaDriver.cuEventQuery(Handle);
        if (r == CUresult.CUDA_ERROR_NOT_READY) return false;
        CudaCheck.ThrowIfFailed(r);
        return true;
    }

    /// <summary>Milliseconds from <paramref name="start"/> to this event (both recorded, this one completed).</summary>
    public float ElapsedSince(CudaEvent start)
    {
        float ms;
        CudaCheck.ThrowIfFailed(CudaDriver.cuEventElapsedTime(&ms, start.Handle, Handle));
        return ms;
    }

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        _ctx.BindForCleanup();
        CudaDriver.cuEventDestroy_v2(Handle);
        Handle = IntPtr.Zero;
    }
}

/// <summary>
/// A CUDA graph captured from a stream: everything enqueued on the stream between <see cref="Capture"/>'s begin and
/// end (kernels, cuBLAS calls with a workspace set, async copies) replays with one <see cref="Launch"/>.
/// </summary>
public sealed unsafe class CudaGraph : IDisposable
{
    readonly CudaContext _ctx;
    IntPtr _graph, _exec;

    CudaGraph(CudaContext ctx, IntPtr graph, IntPtr exec)
    {
        _ctx = ctx;
        _graph = graph;
        _exec = exec;
    }

    public static CudaGraph Capture(CudaContext ctx, CudaStream stream, Action enqueue)
    {
        ctx.Bind();
        CudaCheck.ThrowIfFailed(CudaDriver.cuStreamBeginCapture_v2(stream.Handle, CudaDriver.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
        IntPtr graph = IntPtr.Zero;
        try
        {
            enqueue();
        }
        catch
        {
            // End the capture so the stream works again; the partial graph is dropped and the caller's error reported.
            if (CudaDriver.cuStreamEndCapture(stream.Handle, &graph) == CUresult.CUDA_SUCCESS && graph != IntPtr.Zero)
                CudaDriver.cuGraphDestroy(graph);
            throw;
        }
        CudaCheck.ThrowIfFailed(CudaDriver.cuStreamEndCapture(stream.Handle, &graph));
        IntPtr exec;
        var status = CudaDriver.cuGraphInstantiateWithFlags(&exec, graph, 0);
        if (status != CUresult.CUDA_SUCCESS)
        {
            CudaDriver.cuGraphDestroy(graph);
            CudaCheck.ThrowIfFailed(status);
        }
        return new CudaGraph(ctx, graph, exec);
    }

    public void Launch(CudaStream stream) => CudaCheck.ThrowIfFailed(CudaDriver.cuGraphLaunch(_exec, stream.Handle));

    public void Dispose()
    {
        if (_exec == IntPtr.Zero) return;
        _ctx.BindForCleanup();
        CudaDriver.cuGraphExecDestroy(_exec);
        CudaDriver.cuGraphDestroy(_graph);
        _exec = _graph = IntPtr.Zero;
    }
}
