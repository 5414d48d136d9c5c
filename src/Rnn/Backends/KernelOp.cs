using System.Runtime.CompilerServices;

namespace CharRnn.Rnn.Backends;

/// <summary>
/// A kernel of <c>kernels/*.cu</c> declared once in C# (#22): its name, an argument record (<typeparamref name="TArgs"/>)
/// whose <see cref="IKernelArgs.Write"/> lists the kernel's parameters in order and by name, and its grid rule. The
/// CUDA backend launches it from these alone, so a launch is typed; <c>KernelDeclarationTests</c> reads every
/// declaration's parameter list (<see cref="Signature"/>) against the kernel's and fails when a name, a kind or the order
/// differs, or when a kernel has no declaration. Ops the CPU runs too are <see cref="HostedOp{TArgs}"/>s.
/// </summary>
public abstract class KernelOp<TArgs> : KernelOp where TArgs : struct, IKernelArgs
{

    /// <summary>How many blocks (of the backend's 256 threads unless the grid says otherwise) a launch takes.</summary>
    public abstract Grid GridFor(in TArgs a);

    /// <summary>The parameters <see cref="IKernelArgs.Write"/> produces, in order (written from a default record: the
    /// writer records names and kinds and reads no tensor).</summary>
    public override IReadOnlyList<KernelParameter> Signature()
    {
        var w = new SignatureWriter();
        default(TArgs).Write(w);
        return w.Parameters;
    }
}

/// <summary>What every declaration has, whatever its argument record (see <see cref="KernelOp{TArgs}"/>).</summary>
public abstract class KernelOp
{
    /// <summary>The kernel's <c>extern "C"</c> name.</summary>
    public abstract string Kernel { get; }

    /// <summary>The kernel's parameters as the declaration passes them, in order.</summary>
    public abstract IReadOnlyList<KernelParameter> Signature();

    public override string ToString() => Kernel;
}

/// <summary>A kernel's arguments as a record: <see cref="Write"/> hands them to a <see cref="KernelArgWriter"/> in the
/// kernel's parameter order, each under the kernel's parameter name (the record's field names are the C names in
/// PascalCase; a derived value names its parameter: <c>w.Int(H.Rows, "n")</c>). <see cref="KernelOp{TArgs}.Signature"/>
/// writes a default record, so sizes come from <see cref="Mat"/> fields (structs), never from a <see cref="Tensor"/>'s.</summary>
public interface IKernelArgs
{
    void Write(KernelArgWriter w);
}

/// <summary>What a kernel parameter holds, as far as a launch can tell: a pointer to floats (a tensor block), to ints
/// (an index view), to anything else (backend scratch: tables, partial sums, barrier state), or a value.</summary>
public enum KernelArgKind { FloatPointer, IntPointer, OtherPointer, Int, Float, U64 }

public readonly record struct KernelParameter(string Name, KernelArgKind Kind);

/// <summary>A device address of backend-owned scratch (a tensor table, partial sums, a barrier's state), 0 for none.</summary>
public readonly record struct DevicePointer(ulong Address);

/// <summary>
/// Receives a kernel's arguments (<see cref="IKernelArgs.Write"/>): the CUDA backend turns them into launch arguments,
/// the signature writer into a parameter list. Each call is named by the expression passed
/// (<see cref="CallerArgumentExpressionAttribute"/>), which is how a record field meets its kernel parameter.
/// </summary>
public abstract class KernelArgWriter
{
    /// <summary>A tensor block the kernel indexes as r·cols: it must be contiguous.</summary>
    public abstract void Ptr(Mat m, [CallerArgumentExpression(nameof(m))] string name = "");
    /// <summary>A tensor block that may be a column range (the kernel takes its leading dimension too).</summary>
    public abstract void Strided(Mat m, [CallerArgumentExpression(nameof(m))] string name = "");
    /// <summary>A whole tensor; null passes a null pointer (an optional operand).</summary>
    public abstract void Ptr(Tensor? t, [CallerArgumentExpression(nameof(t))] string name = "");
    public abstract void Ptr(IdxView v, [CallerArgumentExpression(nameof(v))] string name = "");
    public abstract void Ptr(DevicePointer p, [CallerArgumentExpression(nameof(p))] string name = "");
    public abstract void Int(int v, [CallerArgumentExpression(nameof(v))] string name = "");
    public abstract void Float(float v, [CallerArgumentExpression(nameof(v))] string name = "");
    public abstract void U64(ulong v, [CallerArgumentExpression(nameof(v))] string name = "");
}

/// <summary>Records names and kinds only (<see cref="KernelOp{TArgs}.Signature"/>).</summary>
sealed class SignatureWriter : KernelArgWriter
{
    public readonly List<KernelParameter> Parameters = [];
    void Add(string name, KernelArgKind kind) => Parameters.Add(new KernelParameter(name, kind));
    public override void Ptr(Mat m, string name = "") => Add(name, KernelArgKind.FloatPointer);
    public override void Strided(Mat m, string name = "") => Add(name, KernelArgKind.FloatPointer);
    public override void Ptr(Tensor? t, string name = "") => Add(name, KernelArgKind.FloatPointer);
    public override void Ptr(IdxView v, string name = "") => Add(name, KernelArgKind.IntPointer);
    public override void Ptr(DevicePointer p, string name = "") => Add(name, KernelArgKind.OtherPointer);
    public override void Int(int v, string name = "") => Add(name, KernelArgKind.Int);
    public override void Float(float v, string name = "") => Add(name, KernelArgKind.Float);
    public override void U64(ulong v, string name = "") => Add(name, KernelArgKind.U64);
}

public enum GridKind
{
    /// <summary>A grid-stride loop over <see cref="Grid.X"/> elements: ⌈X / threads⌉ blocks, capped by the backend.</summary>
    Elements,
    /// <summary>Exactly <see cref="Grid.X"/> blocks (one per row, one per 32 columns, a single block, …).</summary>
    Blocks,
    /// <summary>Exactly <see cref="Grid.X"/> blocks of <see cref="Grid.Threads"/> threads with <see cref="Grid.SharedBytes"/>
    /// of dynamic shared memory, all resident at once (a cooperative launch: the kernel waits at grid barriers).</summary>
    Cooperative,
    /// <summary><see cref="Grid.X"/> blocks of <see cref="Grid.Threads"/> threads with <see cref="Grid.SharedBytes"/>
    /// of dynamic shared memory in thread-block clusters of <see cref="Grid.Y"/> blocks (sm_90: the kernel waits at
    /// cluster barriers and reaches the other blocks' shared memory).</summary>
    Cluster,
}

/// <summary>A launch's grid: <see cref="X"/> by its <see cref="Kind"/>, <see cref="Y"/> along y (a multi-tensor
/// kernel's tensor; the table of their addresses is then the kernel's first parameter), or, for
/// <see cref="GridKind.Cluster"/>, the blocks per cluster.</summary>
public readonly record struct Grid(GridKind Kind, long X, int Y = 1, int Threads = 0, int SharedBytes = 0)
{
    public static Grid Elements(long n) => new(GridKind.Elements, n);
    public static Grid Blocks(long blocks) => new(GridKind.Blocks, blocks);
    public static Grid Single => new(GridKind.Blocks, 1);
}
