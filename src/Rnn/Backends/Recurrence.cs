using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Backends;

/// <summary>
/// One recurrent layer over T steps, as the backend's whole-recurrence ops (<see cref="IBackend.RecurrenceForward"/>,
/// <see cref="IBackend.RecurrenceBackward"/>) see it. The layer (a cell's workspace, <c>Model/Cells</c>) knows how to
/// issue one step as backend ops; a backend that can run the whole loop in one fused implementation (a persistent
/// kernel) reads what it needs from <see cref="Plain"/> instead, and falls back to the steps when that is null or
/// the shape does not fit.
/// </summary>
public interface IRecurrence
{
    int Steps { get; }

    /// <summary>Step t: H_{t+1} (and the cell's gates) from the pre-activations of step t and the state H_t.</summary>
    void ForwardStep(IBackend be, int t);

    /// <summary>Before step T−1 of the backward pass: clears what the steps accumulate into.</summary>
    void BeginBackward(IBackend be);

    /// <summary>Step t of the backward pass: the pre-activation gradients of step t from dH_t (which it completes with
    /// the recurrent part from step t+1) and the saved gates.</summary>
    void BackwardStep(IBackend be, int t);

    /// <summary>After step 0: d loss / d H_0 (and C_0) when the layer was asked for them.</summary>
    void EndBackward(IBackend be);

    /// <summary>The tensors of a plain (tanh/relu) RNN layer, for a fused implementation; null for gated cells.</summary>
    PlainRecurrence? Plain { get; }

    /// <summary>The tensors of an LSTM or (PyTorch's) GRU layer, for a fused implementation; null for other cells.</summary>
    GatedRecurrence? Gated => null;
}

/// <summary>The gated cells a fused recurrence exists for (the book's scratch GRU, reset before the product, has none).</summary>
public enum GatedCell { Lstm, Gru }

/// <summary>
/// An LSTM or GRU layer's recurrence tensors, the per-step path's buffers (time-major, T·B rows): <paramref name="Pre"/>
/// the input products (G·H wide), <paramref name="Hs"/> H_0 … H_T, <paramref name="Gates"/> the activated gates,
/// <paramref name="Cs"/> the LSTM's C_0 … C_T, <paramref name="HProj"/> the GRU's h·W_hh, <paramref name="DH"/> dH from
/// above, <paramref name="DPre"/> d(x·W_x), <paramref name="DHProj"/> the GRU's d(h·W_hh + b_h), <paramref name="DC"/>
/// the LSTM's carried dC (B × H), <paramref name="DH0"/>/<paramref name="DC0"/> d/dH_0, d/dC_0 when
/// <paramref name="WantDH0"/>. The per-step ops on them are <see cref="GatedSteps"/>.
/// </summary>
public sealed record GatedRecurrence(GatedCell Cell, int Batch, int Hidden, Tensor Pre, Tensor Hs, Tensor Gates, Tensor? Cs,
    Tensor? HProj, Tensor Wh, Tensor Bx, Tensor? Bh, Tensor DH, Tensor DPre, Tensor? DHProj, Tensor? DC, Tensor DH0, Tensor? DC0,
    bool WantDH0)
{
    /// <summary>Gates per hidden unit: 4 (LSTM), 3 (GRU).</summary>
    public int G => Cell == GatedCell.Lstm ? 4 : 3;
}

/// <summary>
/// A plain RNN layer's recurrence: for t = 0…T−1, H_{t+1} = act(Pre_t + b_x (+ b_h) + H_t·W_hh) into rows
/// [(t+1)·B, (t+2)·B) of <paramref name="Hs"/>, with Pre_t = rows [t·B, (t+1)·B) of <paramref name="Pre"/> (the input
/// products, which the per-step path accumulates H_t·W_hh into); backward, for t = T−1…0,
/// dPre_t = (dH_t + dPre_{t+1}·W_hhᵀ) ⊙ act′(H_{t+1}), where the per-step path accumulates into
/// <paramref name="DH"/>; and, when <paramref name="WantDH0"/>, dH_0 = dPre_0·W_hhᵀ.
/// </summary>
public sealed record PlainRecurrence(Activation Activation, int Batch, int Hidden, Tensor Pre, Tensor Hs, Tensor Wh,
    Tensor Bx, Tensor? Bh, Tensor DH, Tensor DPre, Tensor DH0, bool WantDH0);

/// <summary>
/// Progress of a foreground recurrence that background blocks wait on (<see cref="IBackend.Overlap"/>): the number
/// of steps finished, published after each step.
/// </summary>
public sealed class StepProgress
{
    int _done;

    /// <summary>Told each publication (a GPU backend marks the point in its stream with an event).</summary>
    public Action<int>? Published { get; set; }

    /// <summary>Told each wait before it spins, with the backend the waiter issues its work on (a GPU backend makes that
    /// backend's stream wait for the event of the first publication that covers <c>steps</c>).</summary>
    public Action<IBackend, int>? Waiting { get; set; }

    public void Publish(int stepsDone)
    {
        Published?.Invoke(stepsDone);
        Volatile.Write(ref _done, stepsDone);
    }

    /// <summary>Spins until at least <paramref name="steps"/> steps are done; <paramref name="waiter"/>: the backend
    /// the waiting block issues its work on (the one <see cref="IBackend.Overlap"/> handed it).</summary>
    public void WaitFor(IBackend waiter, int steps)
    {
        Waiting?.Invoke(waiter, steps);
        var spin = new SpinWait();
        while (Volatile.Read(ref _done) < steps) spin.SpinOnce(sleep1Threshold: -1);
    }
}

/// <summary>A plain RNN layer's per-step ops on its <see cref="PlainRecurrence"/> tensors: what <c>RnnCell</c>'s steps
/// issue, and what a backend times them by on scratch tensors of the same shapes (<c>CudaBackend</c>'s planner).</summary>
public static class PlainSteps
{
    static Mat Rows(Tensor t, PlainRecurrence r, int step) => t.RowRange(step * r.Batch, r.Batch);

    /// <summary>Step t: Pre_t += H_t·W_hh, then H_{t+1} = act(Pre_t + b_x (+ b_h)).</summary>
    public static void Forward(IBackend be, PlainRecurrence r, int t)
    {
        var pre = Rows(r.Pre, r, t);
        be.Gemm(false, false, 1f, Rows(r.Hs, r, t), r.Wh.All, 1f, pre);
        be.BiasActivationForward(r.Activation, pre, r.Bx, r.Bh, Rows(r.Hs, r, t + 1));
    }

    /// <summary>Backward step t of <paramref name="steps"/>: dH_t += dPre_{t+1}·W_hhᵀ (but at the last step), then
    /// dPre_t = dH_t ⊙ act′(H_{t+1}).</summary>
    public static void Backward(IBackend be, PlainRecurrence r, int t, int steps)
    {
        var dh = Rows(r.DH, r, t);
        if (t < steps - 1) be.Gemm(false, true, 1f, Rows(r.DPre, r, t + 1), r.Wh.All, 1f, dh);
        be.ActivationBackward(r.Activation, dh, Rows(r.Hs, r, t + 1), Rows(r.DPre, r, t));
    }

    /// <summary>After step 0: dH_0 = dPre_0·W_hhᵀ when the layer wants it.</summary>
    public static void End(IBackend be, PlainRecurrence r)
    {
        if (r.WantDH0) be.Gemm(false, true, 1f, Rows(r.DPre, r, 0), r.Wh.All, 0f, r.DH0.All);
    }
}

/// <summary>An LSTM or GRU layer's per-step ops on its <see cref="GatedRecurrence"/> tensors: what <c>LstmCell</c>'s and
/// <c>GruCell</c>'s steps issue, and what a backend times them by on scratch tensors of the same shapes.</summary>
public static class GatedSteps
{
    static Mat Rows(Tensor t, GatedRecurrence r, int step) => t.RowRange(step * r.Batch, r.Batch);

    public static void Forward(IBackend be, GatedRecurrence r, int t)
    {
        if (r.Cell == GatedCell.Lstm)
        {
            var pre = Rows(r.Pre, r, t);
            be.Gemm(false, false, 1f, Rows(r.Hs, r, t), r.Wh.All, 1f, pre); // all four gates at once
            be.LstmForward(pre, r.Bx, r.Bh, Rows(r.Cs!, r, t), Rows(r.Gates, r, t), Rows(r.Cs!, r, t + 1), Rows(r.Hs, r, t + 1));
            return;
        }
        var hp = Rows(r.HProj!, r, t);
        be.Gemm(false, false, 1f, Rows(r.Hs, r, t), r.Wh.All, 0f, hp); // r, z, n hidden parts
        be.GruForward(Rows(r.Pre, r, t), hp, r.Bx, r.Bh, Rows(r.Hs, r, t), Rows(r.Gates, r, t), Rows(r.Hs, r, t + 1));
    }

    /// <summary>Before step T−1: the LSTM's carried dC to zero; the GRU's dH_0, which step 0 adds z ⊙ dH_0 into.</summary>
    public static void Begin(IBackend be, GatedRecurrence r) => be.Zero(r.Cell == GatedCell.Lstm ? r.DC!.All : r.DH0.All);

    public static void Backward(IBackend be, GatedRecurrence r, int t, int steps)
    {
        var dh = Rows(r.DH, r, t);
        if (r.Cell == GatedCell.Lstm)
        {
            if (t < steps - 1) be.Gemm(false, true, 1f, Rows(r.DPre, r, t + 1), r.Wh.All, 1f, dh);
            be.LstmBackward(dh, r.DC!.All, Rows(r.Gates, r, t), Rows(r.Cs!, r, t), Rows(r.Cs!, r, t + 1), Rows(r.DPre, r, t));
            return;
        }
        if (t < steps - 1) be.Gemm(false, true, 1f, Rows(r.DHProj!, r, t + 1), r.Wh.All, 1f, dh); // + dHProj_{t+1}·W_hhᵀ
        be.GruBackward(dh, Rows(r.Gates, r, t), Rows(r.HProj!, r, t), r.Bh, Rows(r.Hs, r, t), Rows(r.DPre, r, t), Rows(r.DHProj!, r, t),
            t > 0 ? Rows(r.DH, r, t - 1) : r.DH0.All);                                                 // dH_{t−1} += z ⊙ dH_t
    }

    /// <summary>After step 0, when the layer wants them: dH_0 (and the LSTM's dC_0).</summary>
    public static void End(IBackend be, GatedRecurrence r)
    {
        // Stryker disable once Statement : computing dH_0/dC_0 unasked only costs time — they are read only when asked for
        if (!r.WantDH0) return;
        if (r.Cell == GatedCell.Lstm)
        {
            be.Gemm(false, true, 1f, Rows(r.DPre, r, 0), r.Wh.All, 0f, r.DH0.All);
            be.Copy(r.DC!.All, r.DC0!.All);
            return;
        }
        be.Gemm(false, true, 1f, Rows(r.DHProj!, r, 0), r.Wh.All, 1f, r.DH0.All);
    }
}

/// <summary>The whole-recurrence ops as the per-step ops they are by default (what any backend may fall back to).</summary>
public static class RecurrenceSteps
{
    public static void Forward(IBackend be, IRecurrence layer, StepProgress? progress)
    {
        for (int t = 0; t < layer.Steps; t++)
        {
            layer.ForwardStep(be, t);
            progress?.Publish(t + 1);
        }
    }

    public static void Backward(IBackend be, IRecurrence layer)
    {
        layer.BeginBackward(be);
        for (int t = layer.Steps - 1; t >= 0; t--) layer.BackwardStep(be, t);
        layer.EndBackward(be);
    }
}
