using CharRnn.Cuda;
using CharRnn.Interop;

namespace CharRnn.Rnn.Backends.Cuda;

public sealed class CudaTensor : Tensor
{
    internal CudaTensor(CudaContext ctx, int rows, int cols) : base(rows, cols) => Buffer = ctx.Allocate<float>((long)rows * cols);
    public DeviceBuffer<float> Buffer { get; }
    public override ulong DeviceAddress => Buffer.Pointer;

    /// <summary>Told before the memory goes (the backend drops what it built on this tensor's address).</summary>
    internal Action<CudaTensor>? Disposing { get; set; }

    public override void Dispose()
    {
        if (Buffer.Length > 0 && Disposing is { } d)
        {
            Disposing = null;
            d(this);
        }
        Buffer.Dispose();
    }
}

public sealed class CudaIndices : IndexBuffer
{
    internal CudaIndices(CudaContext ctx, int length) : base(length) => Buffer = ctx.Allocate<int>(length);
    public DeviceBuffer<int> Buffer { get; }
    public override void Dispose() => Buffer.Dispose();
}
