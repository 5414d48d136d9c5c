namespace CharRnn.Rnn.Backends;

/// <summary>The arithmetic of the GPU's GEMMs (<c>--precision</c>).</summary>
public enum Precision
{
    /// <summary>FP32 operands and products (PyTorch's default for matmuls).</summary>
    Fp32,
    /// <summary>FP32 storage, TF32 tensor-core products (10-bit mantissas), FP32 accumulation.</summary>
    Tf32,
    /// <summary>FP32 storage (weights, optimizer, softmax and loss, checkpoints), GEMM operands rounded to bfloat16
    /// (8-bit mantissas) for the tensor cores, FP32 accumulation. The persistent recurrence stays FP32.</summary>
    Bf16,
}

/// <summary>How the CUDA backend runs a plain RNN layer's recurrence (<c>--recurrence</c>).</summary>
public enum RecurrenceMode
{
    /// <summary>The fastest eligible plan as timed on this card on first use of a shape (per step, grid-persistent,
    /// each cluster shape that fits), cached (<c>CudaBackend.Plans</c>); without timing
    /// (<see cref="GpuOptions.TimePlans"/>), the grid kernels where they fit and B·H² ≤ 2^26, else the per-step ops.</summary>
    Auto,
    /// <summary>The grid-persistent kernels wherever they fit, large products included.</summary>
    Persistent,
    /// <summary>Always the per-step ops (a GEMM and an elementwise kernel per step): for comparison and debugging.</summary>
    Steps,
    /// <summary>The thread-block cluster kernels (sm_90) wherever they fit (the fastest cluster shape when timing).</summary>
    Cluster,
}

/// <summary>
/// Settings of the CUDA backend; the CPU backend ignores them. <paramref name="Graphs"/>: replay each training step as a
/// CUDA graph (captured once per shape) instead of issuing its ops one by one (<c>--graph on|off</c>).
/// <paramref name="PersistentColumns"/>: hidden columns per block of the persistent kernels instead of the planned
/// number, for timing tilings on a card (the CLI takes it from <c>CHARRNN_PERSISTENT_COLS</c>; null = planned).
/// <paramref name="TimePlans"/>: choose the recurrence plan by timing the candidates on the card (cached); false keeps
/// the untimed rule (the tests' default: the emulator's timings mean nothing, and its choice would vary by load).
/// <paramref name="ResumePlan"/>: the plan id a resumed checkpoint trained with; auto runs it where it is eligible.
/// </summary>
public sealed record GpuOptions(Precision Precision = Precision.Fp32, RecurrenceMode Recurrence = RecurrenceMode.Auto, bool Graphs = true,
    int? PersistentColumns = null, bool TimePlans = true, string? ResumePlan = null)
{
    public static GpuOptions Default { get; } = new();
}
