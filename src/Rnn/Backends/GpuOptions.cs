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
    /// <summary>The persistent kernels where the cell, the shape and the card allow and the products are small enough
    /// for launches to matter (B·H² ≤ 2^26), else the per-step ops.</summary>
    Auto,
    /// <summary>The persistent kernels wherever they fit, large products included (for timing against the per-step path).</summary>
    Persistent,
    /// <summary>Always the per-step ops (a GEMM and an elementwise kernel per step): for comparison and debugging.</summary>
    Steps,
}

/// <summary>
/// Settings of the CUDA backend; the CPU backend ignores them. <paramref name="Graphs"/>: replay each training step as a
/// CUDA graph (captured once per shape) instead of issuing its ops one by one (<c>--graph on|off</c>).
/// <paramref name="PersistentColumns"/>: hidden columns per block of the persistent kernels instead of the planned
/// number, for timing tilings on a card (the CLI takes it from <c>CHARRNN_PERSISTENT_COLS</c>; null = planned).
/// </summary>
public sealed record GpuOptions(Precision Precision = Precision.Fp32, RecurrenceMode Recurrence = RecurrenceMode.Auto, bool Graphs = true,
    int? PersistentColumns = null)
{
    public static GpuOptions Default { get; } = new();
}
