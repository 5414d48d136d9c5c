using CharRnn.Cuda;
using CharRnn.Interop;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Backends.Cuda;

/// <summary>The CUDA backend's scheduling: the side lane beside the recurrence (<see cref="Overlap"/>), the whole-layer
/// recurrence (persistent kernels or per-step ops), timing and graph recordings.</summary>
public sealed unsafe partial class CudaBackend
{
    /// <summary>The foreground's ops on this stream, the background blocks' on the side lane's (each block is handed
    /// the lane), ordered by events: the lane starts after what this stream held before the foreground, and this stream
    /// goes on only after the lane's last block. Sequentially on this stream where the profiler times op by op (or on the
    /// lane itself, which has no lane).</summary>
    public void Overlap(Action foreground, IReadOnlyList<Action<IBackend>> background)
    {
        if (Profiler != null || background.Count == 0 || _lane == null)
        {
            foreground();
            foreach (var b in background) b(this);
            return;
        }
        _ctx.Bind();
        _fork!.Record(_stream); // the blocks may read what this stream wrote before the foreground
        foreground();
        _lane._stream.Wait(_fork);
        foreach (var b in background) b(_lane); // a block's WaitFor becomes a wait for the foreground's event (RecurrenceForward)
        _join!.Record(_lane._stream);
        _stream.Wait(_join); // what follows on this stream sees the blocks' outputs (and what they issued: an all-reduce)
    }

    public bool FusesRecurrence(IRecurrence layer) => Fused(layer) != null;

    /// <summary>Whole 32-byte rows for W_hq, b_q and the logits (cuBLAS's fast paths want aligned leading dimensions).</summary>
    public int PaddedVocabulary(int vocab) => (vocab + 7) / 8 * 8;

    /// <summary>Marks each step the forward recurrence publishes with an event on the main stream, and turns a
    /// background block's wait for steps into its stream waiting for the first such event that covers them.</summary>
    void TrackProgress(StepProgress progress)
    {
        var published = new List<(int Steps, CudaEvent Event)>();
        progress.Published = n =>
        {
            if (published.Count == _stepEvents.Count) _stepEvents.Add(_ctx.Own(_ctx.CreateEvent()));
            var e = _stepEvents[published.Count];
            e.Record(_stream); // the recurrence runs on this instance's stream
            published.Add((n, e));
        };
        progress.Waiting = (waiter, k) =>
        {
            var stream = StreamOf(waiter) ?? throw new InvalidOperationException($"a block of another backend ({waiter.Name}) waits for this recurrence");
            foreach (var (n, e) in published)
                if (n >= k)
                {
                    stream.Wait(e);
                    return;
                }
            throw new InvalidOperationException($"a block waits for {k} steps, but the recurrence published only {published.Count}");
        };
    }

    /// <summary>The fused kernels' plan for this layer, or null where the per-step ops run.</summary>
    RecurrencePlan? Fused(IRecurrence layer) => PlanOf(layer) is { PerStep: false } p ? p : null;

    public void RecurrenceForward(IRecurrence layer, StepProgress? progress)
    {
        if (progress != null && Profiler == null) TrackProgress(progress);
        if (Fused(layer) is not { } plan)
        {
            RecurrenceSteps.Forward(this, layer, progress);
            return;
        }
        RunForward(plan, (object?)layer.Plain ?? layer.Gated!, layer.Steps);
        progress?.Publish(layer.Steps); // the blocks waiting on it are issued after it on this one stream anyway
    }

    public void RecurrenceBackward(IRecurrence layer)
    {
        if (Fused(layer) is not { } plan)
        {
            RecurrenceSteps.Backward(this, layer);
            return;
        }
        RunBackward(plan, (object?)layer.Plain ?? layer.Gated!, layer.Steps);
    }

    public string DescribeRecurrence(IRecurrence layer) => PlanOf(layer).Description;

    public string? RecurrencePlanId(IRecurrence layer) => PlanOf(layer).Id;

    public double? DeviceSeconds(Action ops, int repeats)
    {
        using var start = _ctx.CreateEvent(timing: true);
        using var end = _ctx.CreateEvent(timing: true);
        start.Record(_stream);
        for (int i = 0; i < repeats; i++) ops();
        end.Record(_stream);
        end.Synchronize();
        return end.ElapsedSince(start) / 1e3 / repeats;
    }

    public long? MemoryPeakBytes => _ctx.PeakAllocatedBytes;
    public void ResetMemoryPeak() => _ctx.ResetPeak();

    public string? RecordingUnavailable => _options.Graphs ? null : "turned off by --graph off";

    public IRecording Record(Action ops)
    {
        if (!_options.Graphs) throw new NotSupportedException("recording is " + RecordingUnavailable);
        _state.Recording = true;
        try
        {
            return new GraphRecording(CudaGraph.Capture(_ctx, _stream, ops), _stream); // Overlap joins its lane back in
        }
        finally
        {
            _state.Recording = false;
        }
    }

    sealed class GraphRecording(CudaGraph graph, CudaStream stream) : IRecording
    {
        public void Replay() => graph.Launch(stream);
        public void Dispose() => graph.Dispose();
    }
}
