namespace CharRnn.Rnn.Backends;

/// <summary>A float32 row-major matrix living on a backend (host memory or GPU memory).</summary>
public abstract class Tensor : IDisposable
{
    protected Tensor(int rows, int cols)
    {
        // The backends index elements with int: a bigger tensor would wrap (MemoryBudget refuses such runs up front).
        if (rows < 0 || cols < 0 || (long)rows * cols > int.MaxValue)
            throw new CharRnnException($"A {rows} × {cols} tensor is larger than a tensor can be ({int.MaxValue} values).");
        Rows = rows;
        Cols = cols;
    }

    public int Rows { get; }
    public int Cols { get; }
    public int Length => Rows * Cols;
    public Mat All => new(this, 0, Rows, Cols);
    public Mat RowRange(int first, int count) => All.RowRange(first, count);
    public abstract void Dispose();

    /// <summary>Where collectives reach the values without knowing the backend's types: the host array of a CPU tensor
    /// (MPI reduces it in place), or null.</summary>
    public virtual float[]? HostArray => null;

    /// <summary>The device address of a GPU tensor's values (NCCL reduces them in place on the GPU), or 0.</summary>
    public virtual ulong DeviceAddress => 0;
}

/// <summary>An int32 vector on a backend (token ids).</summary>
public abstract class IndexBuffer(int length) : IDisposable
{
    public int Length { get; } = length;
    public IdxView All => new(this, 0, Length);
    public IdxView Range(int offset, int length) => new(this, offset, length);
    public abstract void Dispose();

    /// <summary>The host array of a CPU index buffer (the CPU twins read it), or null.</summary>
    public virtual int[]? HostArray => null;
}

/// <summary>
/// A block of a tensor: element (r, c) is at <c>Offset + r*Stride + c</c>. Row ranges of a whole tensor are
/// contiguous (Stride = Cols); column ranges are not, and only GEMM and column sums accept those.
/// </summary>
public readonly record struct Mat(Tensor Tensor, int Offset, int Rows, int Cols)
{
    /// <summary>Elements between the starts of two rows (the leading dimension); Cols unless this is a column range.</summary>
    public int Stride { get; init; } = Cols;

    public int Length => Rows * Cols;
    public bool IsContiguous => Stride == Cols || Rows <= 1;

    public Mat RowRange(int first, int count)
    {
        if (first < 0 || count < 0 || first + count > Rows) throw new ArgumentOutOfRangeException(nameof(first));
        return new Mat(Tensor, Offset + first * Stride, count, Cols) { Stride = Stride };
    }

    public Mat ColumnRange(int first, int count)
    {
        if (first < 0 || count < 0 || first + count > Cols) throw new ArgumentOutOfRangeException(nameof(first));
        return new Mat(Tensor, Offset + first, Rows, count) { Stride = Stride };
    }

    /// <summary>Throws unless the rows are back to back (what the elementwise ops need).</summary>
    public Mat Contiguous([System.Runtime.CompilerServices.CallerMemberName] string op = "") =>
        IsContiguous ? this : throw new ArgumentException($"{op} needs a contiguous block (got a column range)");
}

/// <summary>A contiguous range of an index buffer.</summary>
public readonly record struct IdxView(IndexBuffer Buffer, int Offset, int Length);

/// <summary>How the input product onehot(X)·W_xh (and its gradient) is computed. Both are exactly equal.</summary>
public enum InputMode
{
    /// <summary>Row gather from W_xh; gradient by scatter-add of dPre rows.</summary>
    Gather,
    /// <summary>One-hot scatter into a (T·B × V) matrix, then one GEMM; gradient by one GEMM (the design card's path).</summary>
    OneHotGemm,
}

/// <summary>The plain RNN cell's nonlinearity (d2l 6.4: tanh; nn.RNN's nonlinearity='relu').</summary>
public enum Activation { Tanh, Relu }
