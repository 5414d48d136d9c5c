namespace CharRnn.Rnn.Backends.Cpu;

/// <summary>Host-memory tensor of the CPU backend.</summary>
public sealed class CpuTensor : Tensor
{
    public CpuTensor(int rows, int cols) : base(rows, cols) => Data = new float[Length]; // after the base's size check

    public float[] Data { get; }
    public override float[] HostArray => Data;
    public override void Dispose() { }
}

public sealed class CpuIndices(int length) : IndexBuffer(length)
{
    public int[] Data { get; } = new int[length];
    public override int[] HostArray => Data;
    public override void Dispose() { }
}
