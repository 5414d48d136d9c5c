using CharRnn.Rnn.Backends;

namespace CharRnn.Rnn.Model;

/// <summary>
/// One recurrent layer's workspace over T steps of B rows, time-major (row t·B + b is step t of batch row b), and the
/// layer's forward and backward steps as backend ops (<see cref="IRecurrence"/>). Every cell has the buffers here;
/// a cell adds what its gates need.
/// </summary>
public abstract class CellLayer : IRecurrence, IDisposable
{
    protected CellLayer(IBackend be, LayerTensors p, ModelSpec spec, int batch, int steps)
    {
        P = p;
        Batch = batch;
        Steps = steps;
        Hidden = spec.Hidden;
        int tb = steps * batch, gh = spec.Gates * spec.Hidden;
        Pre = be.Zeros(tb, gh);
        Hs = be.Zeros((steps + 1) * batch, Hidden);
        DH = be.Zeros(tb, Hidden);
        DPre = be.Zeros(tb, gh);
        DH0 = be.Zeros(batch, Hidden);
    }

    public LayerTensors P { get; }
    public int Batch { get; }
    public int Steps { get; }
    public int Hidden { get; }

    /// <summary>(T·B × G·H) x·W_x for all steps (no biases); RNN and LSTM accumulate h·W_h into it step by step.</summary>
    public Tensor Pre { get; }
    /// <summary>((T+1)·B × H) rows [0, B) = H_0, then H_1 … H_T.</summary>
    public Tensor Hs { get; }
    /// <summary>(T·B × H) d loss / d H_t: from above, plus the recurrent part the backward steps add.</summary>
    public Tensor DH { get; }
    /// <summary>(T·B × G·H) d loss / d (x·W_x + b_x).</summary>
    public Tensor DPre { get; }
    /// <summary>(B × H) d loss / d H_0, filled when <see cref="WantDH0"/>.</summary>
    public Tensor DH0 { get; }

    /// <summary>((T+1)·B × H) LSTM cell states, laid out as <see cref="Hs"/>; null for other cells.</summary>
    public virtual Tensor? Cs => null;
    /// <summary>(B × H) LSTM: d loss / d C_0, filled when <see cref="WantDH0"/>.</summary>
    public virtual Tensor? DC0 => null;
    /// <summary>d loss / d (h·W_h + b_h) for all steps: <see cref="DPre"/> unless the cell keeps it apart (GRU).</summary>
    public virtual Tensor DRec => DPre;

    /// <summary>Whether the backward pass also computes d loss / d H_0 (and C_0).</summary>
    public bool WantDH0 { get; set; }

    public virtual PlainRecurrence? Plain => null;
    public virtual GatedRecurrence? Gated => null;

    public Mat H0 => Hs.RowRange(0, Batch);
    public Mat HT => Hs.RowRange(Steps * Batch, Batch);
    public Mat? C0 => Cs?.RowRange(0, Batch);
    public Mat? CT => Cs?.RowRange(Steps * Batch, Batch);

    protected Mat Rows(Tensor t, int step) => t.RowRange(step * Batch, Batch);

    public abstract void ForwardStep(IBackend be, int t);
    public virtual void BeginBackward(IBackend be) { }
    public abstract void BackwardStep(IBackend be, int t);
    public abstract void EndBackward(IBackend be);

    /// <summary>dW_hh = Σ_t H_tᵀ·dRec_t, one product over all T·B rows.</summary>
    public virtual void HiddenWeightGradient(IBackend be) =>
        be.Gemm(true, false, 1f, Hs.RowRange(0, Steps * Batch), DRec.All, 0f, P.DWh.All);

    /// <summary>Every buffer the layer owns (null entries skipped).</summary>
    protected virtual IEnumerable<Tensor?> Buffers => [Pre, Hs, DH, DPre, DH0];

    /// <summary>Floats this layer's workspace holds (what <see cref="RecurrentCell.WorkspaceBuffers"/> estimates).</summary>
    public long WorkspaceFloats => Buffers.Sum(t => t == null ? 0L : t.Length);

    public void Dispose()
    {
        foreach (var t in Buffers) t?.Dispose();
    }
}

/// <summary>An LSTM or PyTorch-GRU layer: its steps are <see cref="GatedSteps"/>' on its <see cref="Gated"/> tensors
/// (one definition for the layer and for a backend that times them on scratch tensors).</summary>
public abstract class GatedCellLayer(IBackend be, LayerTensors p, ModelSpec spec, int batch, int steps) : CellLayer(be, p, spec, batch, steps)
{
    public abstract override GatedRecurrence Gated { get; }
    public override void ForwardStep(IBackend be, int t) => GatedSteps.Forward(be, Gated, t);
    public override void BeginBackward(IBackend be) => GatedSteps.Begin(be, Gated);
    public override void BackwardStep(IBackend be, int t) => GatedSteps.Backward(be, Gated, t, Steps);
    public override void EndBackward(IBackend be) => GatedSteps.End(be, Gated);
}
