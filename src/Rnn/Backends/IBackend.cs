namespace CharRnn.Rnn.Backends;

/// <summary>
/// What the one BPTT driver needs of a device: memory, transfers, GEMM, the ops that hold backend state (the loss
/// accumulator, clipping, the optimizers' multi-tensor updates, the scatter-add), the whole-recurrence ops, recording,
/// and <see cref="Run{TArgs}"/> for the declared elementwise and gate ops (<c>Backends/Ops</c>: each kernel declared once
/// with its CPU twin). The CPU backend implements them on host arrays, the CUDA backend by cuBLAS and kernel launches
/// from their declarations on one stream. Ops are asynchronous on GPU backends: only <see cref="ReadLoss"/>, the
/// downloads and <see cref="Synchronize"/> wait for the device.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>"cpu" or "cuda:N".</summary>
    string Name { get; }

    /// <summary>One line for logs: e.g. "cpu (OpenBLAS 0.3.21, 2 threads)" or "cuda:0 (NVIDIA H100 80GB HBM3, sm_90)".</summary>
    string Description { get; }

    /// <summary>The input path this backend uses unless told otherwise.</summary>
    InputMode DefaultInputMode { get; }

    /// <summary>
    /// True when tensors live in host memory and every op has finished when it returns (the CPU backend): reading the
    /// loss or a tensor then costs nothing, so callers may read every epoch; false for a device with queued work.
    /// </summary>
    bool RunsOnHost { get; }

    /// <summary>Device memory held by the backend's buffers at most since <see cref="ResetMemoryPeak"/> (null on the CPU).</summary>
    long? MemoryPeakBytes => null;
    void ResetMemoryPeak() { }

    /// <summary>Seconds the device spends per run of <paramref name="ops"/>, timed by events around
    /// <paramref name="repeats"/> runs (no host time in it); null where the backend has no device clock (the CPU).</summary>
    double? DeviceSeconds(Action ops, int repeats) => null;

    /// <summary>Bytes free for new tensors (host memory left to the process, or the GPU's free memory); null if unknown.</summary>
    long? MemoryAvailable { get; }

    /// <summary>When set, every op is timed into it (and synchronised after): see <see cref="OpProfiler"/>.</summary>
    OpProfiler? Profiler { get; set; }

    /// <summary>Whether <see cref="RecurrenceForward"/> runs <paramref name="layer"/>'s whole recurrence as one fused
    /// launch (a persistent kernel), so nothing can run beside its steps. How the work beside a recurrence is cut into
    /// blocks is the scheduler's choice (<c>Model/OverlapSchedule</c>), made from this and <see cref="RunsOnHost"/>.</summary>
    bool FusesRecurrence(IRecurrence layer) => false;

    /// <summary>The width the output layer's vocabulary dimension is stored at (see <c>RnnModel</c>): V here, whole
    /// 32-byte rows on the GPU.</summary>
    int PaddedVocabulary(int vocab) => vocab;

    Tensor Zeros(int rows, int cols);
    IndexBuffer Indices(int length);

    void Upload(Tensor dst, ReadOnlySpan<float> src);
    void Download(Tensor src, Span<float> dst);
    void Upload(IndexBuffer dst, ReadOnlySpan<int> src);
    void Download(IndexBuffer src, Span<int> dst);

    void Zero(Mat m);
    void Copy(Mat src, Mat dst);

    /// <summary>
    /// Runs a declared op (<see cref="HostedOp{TArgs}"/>, <c>Backends/Ops</c>): the CPU its host twin, a GPU its kernel
    /// with the declaration's grid, on this instance's stream. The elementwise and gate ops are these; callers use them
    /// through <c>Ops.BackendOps</c>' extensions (<c>be.LstmForward(…)</c>).
    /// </summary>
    void Run<TArgs>(HostedOp<TArgs> op, in TArgs args) where TArgs : struct, IKernelArgs;

    /// <summary>table[tokens[r], :] += src[r, :], rows in order (deterministic; on the GPU <c>token_row_order</c> and
    /// <c>scatter_add_ordered</c>).</summary>
    void ScatterAddRows(IdxView tokens, Mat src, Tensor table);

    /// <summary>C = alpha·op(A)·op(B) + beta·C, row-major; op(X) = Xᵀ when trans. beta = 0 never reads C.</summary>
    void Gemm(bool transA, bool transB, float alpha, Mat a, Mat b, float beta, Mat c);

    /// <summary>
    /// The forward recurrence of one layer over all its steps (<see cref="IRecurrence"/>), publishing each finished
    /// step in <paramref name="progress"/> when given. By default the layer's per-step ops; a backend may run the whole
    /// loop as one fused implementation instead (it must then publish progress as it goes, or all of it at the end).
    /// </summary>
    void RecurrenceForward(IRecurrence layer, StepProgress? progress) => RecurrenceSteps.Forward(this, layer, progress);

    /// <summary>The backward recurrence of one layer, steps T−1 … 0 (see <see cref="RecurrenceForward"/>).</summary>
    void RecurrenceBackward(IRecurrence layer) => RecurrenceSteps.Backward(this, layer);

    /// <summary>
    /// The output layer's forward half, fused: logits = h·W_hq (GEMM), then <c>softmax_xent</c> with b_q (<c>Ops.SoftmaxCrossEntropyOp</c>).
    /// The CUDA backend issues exactly those two (cuBLAS, <c>softmax_xent</c>); the CPU backend interleaves them by
    /// blocks of rows, so each block's logits are still in cache when the softmax reads them.
    /// </summary>
    void OutputLayerForward(Mat h, Tensor whq, Tensor bq, IdxView labels, Mat logits, Mat dlogits, float gradScale, Mat rowLoss);

    /// <summary><c>loss_accumulate</c>: adds Σ rowLoss (in row order, in double) and the row count to the loss accumulator.</summary>
    void AccumulateLoss(Mat rowLoss);

    /// <summary>
    /// Runs a sequential chain of ops (<paramref name="foreground"/>) and independent blocks of work
    /// (<paramref name="background"/>, each touching its own outputs) so they may overlap. A background block may wait
    /// (spin) for progress the foreground publishes; the foreground never waits for the background. The CPU backend
    /// runs the foreground on the calling thread and the blocks on the other cores (then on this one too); the CUDA
    /// backend enqueues the foreground on its stream and the blocks on a second stream, ordered by events (a block's
    /// wait for progress becomes a wait for the event the foreground recorded there), then joins the two. Results are
    /// the same either way. Each block is handed the backend to issue its work on (the CPU backend itself; the CUDA
    /// backend's side lane, whose ops go to the second stream): a block that used this backend instead would put its
    /// work on the foreground's stream, so no stream is ever chosen by a hidden "current" one.
    /// </summary>
    void Overlap(Action foreground, IReadOnlyList<Action<IBackend>> background);

    /// <summary><c>argmax_rows</c>: dst[offset + r] = argmax_c(logits[r, c] + bias[c]) (first maximum).</summary>
    void ArgmaxRows(Mat logits, Tensor bias, IdxView dst);

    /// <summary>Zeroes the loss accumulator (sum of row losses and row count).</summary>
    void ResetLoss();

    /// <summary>Waits for the device and returns the summed row losses and the number of rows since <see cref="ResetLoss"/>.</summary>
    (double Sum, long Rows) ReadLoss();

    /// <summary>
    /// <c>sumsq_multi</c> + <c>clip_finalize</c>: the global L2 norm over all <paramref name="grads"/> and the clip
    /// scale θ/norm when norm &gt; θ, else 1 (θ ≤ 0 or ∞: no clipping, scale 1), written to <paramref name="clip"/>
    /// (1 × 2: [scale, norm]) on the backend, where the update ops read the scale without a round trip to the host.
    /// </summary>
    void ComputeClipScale(IReadOnlyList<Tensor> grads, float theta, Tensor clip);

    /// <summary><c>sgd_update_multi</c>: ps[i] −= lr · scale · gs[i] for every i, lr = <paramref name="scalars"/>[0],
    /// scale = <paramref name="clip"/>[0]; one launch for all tensors on a GPU.</summary>
    void SgdUpdate(IReadOnlyList<Tensor> ps, IReadOnlyList<Tensor> gs, Tensor scalars, Tensor clip);

    /// <summary>
    /// <c>adam_update_multi</c>, PyTorch's rule with the corrections of <c>adam_corrections</c> (<c>Ops.AdamCorrectionsOp</c>) (scalars[1], [2]):
    /// g' = scale·g; m = β1 m + (1−β1) g'; v = β2 v + (1−β2) g'²; p −= scalars[1] · m / (√v / scalars[2] + eps), for
    /// every tensor i (one launch for all on a GPU).
    /// </summary>
    void AdamUpdate(IReadOnlyList<Tensor> ps, IReadOnlyList<Tensor> gs, IReadOnlyList<Tensor> ms, IReadOnlyList<Tensor> vs,
        float beta1, float beta2, float eps, Tensor scalars, Tensor clip);

    /// <summary>
    /// <c>select_minibatch</c>: x, y ← minibatch <paramref name="counters"/>[0] of an epoch's inputs and labels (laid end
    /// to end, x.Length tokens each). The step counters (4 ints on the backend): [minibatch in the epoch, run minibatch
    /// low, high, optimizer steps taken]; see <see cref="AdvanceStep"/>.
    /// </summary>
    void SelectMinibatch(IdxView counters, IndexBuffer epochX, IndexBuffer epochY, IndexBuffer x, IndexBuffer y);

    /// <summary><c>step_advance</c>: every step counter + 1 (the run minibatch as one 64-bit count).</summary>
    void AdvanceStep(IdxView counters);

    /// <summary>Why this backend cannot record ops (<see cref="Record"/>); null when it can.</summary>
    string? RecordingUnavailable => "the CPU runs ops as they are issued";

    /// <summary>
    /// Records the ops <paramref name="ops"/> issues as one unit that replays them (a CUDA graph), without running them.
    /// While recording, the ops must not allocate, upload or wait. Throws when recording fails.
    /// </summary>
    IRecording Record(Action ops) => throw new NotSupportedException(RecordingUnavailable);

    /// <summary>How this backend runs <paramref name="layer"/>'s recurrence (for the run's header line).</summary>
    string DescribeRecurrence(IRecurrence layer) => "per-step";

    /// <summary>The id of the plan <paramref name="layer"/>'s recurrence runs with (a GPU's: "cluster 16x8",
    /// "persistent 64x4", "steps"), which a checkpoint records so a resume runs the same; null where there is no choice.</summary>
    string? RecurrencePlanId(IRecurrence layer) => null;

    /// <summary>Waits until all queued work is done.</summary>
    void Synchronize();
}

/// <summary>Recorded ops (<see cref="IBackend.Record"/>): each <see cref="Replay"/> issues all of them again, with the
/// arguments they had when recorded, reading whatever the buffers hold then.</summary>
public interface IRecording : IDisposable
{
    void Replay();
}

public static class BackendExtensions
{
    public static float[] ToArray(this IBackend be, Tensor t)
    {
        var a = new float[t.Length];
        be.Download(t, a);
        return a;
    }

    public static int[] ToArray(this IBackend be, IndexBuffer t)
    {
        var a = new int[t.Length];
        be.Download(t, a);
        return a;
    }

    public static Tensor FromArray(this IBackend be, int rows, int cols, ReadOnlySpan<float> data)
    {
        var t = be.Zeros(rows, cols);
        be.Upload(t, data);
        return t;
    }

    public static IndexBuffer FromArray(this IBackend be, ReadOnlySpan<int> data)
    {
        var t = be.Indices(data.Length);
        be.Upload(t, data);
        return t;
    }
}
