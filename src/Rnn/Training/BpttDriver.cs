using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>
/// The one truncated-BPTT driver, written against <see cref="IBackend"/> so the CPU and CUDA backends share it.
/// All buffers are time-major: row t·B + b is time step t of batch row b (the book's <c>torch.cat(outputs)</c> order).
/// Per minibatch it issues only backend ops; nothing is read back to the host.
/// </summary>
public sealed class BpttDriver : IDisposable
{
    readonly IBackend _be;
    readonly RnnModel _m;
    readonly Activation _act;

    public BpttDriver(RnnModel model, int batch, int steps, InputMode? inputMode = null)
    {
        if (batch < 1 || steps < 1) throw new ArgumentOutOfRangeException(nameof(batch));
        _m = model;
        _be = model.Backend;
        _act = model.Spec.Activation;
        Batch = batch;
        Steps = steps;
        Input = inputMode ?? _be.DefaultInputMode;
        int tb = steps * batch, h = model.Spec.Hidden, v = model.Spec.Vocab;
        Pre = _be.Zeros(tb, h);                // (T·B × H)   X_t·W_xh + H_{t-1}·W_hh, before bias and tanh
        Hs = _be.Zeros((steps + 1) * batch, h); // ((T+1)·B × H) rows [0, B) = H_0, rows [(t+1)B, (t+2)B) = H_{t+1}
        Logits = _be.Zeros(tb, v);             // (T·B × V)   H·W_hq, without b_q (the softmax kernel adds it)
        DLogits = _be.Zeros(tb, v);            // (T·B × V)   d loss / d logits
        DH = _be.Zeros(tb, h);                 // (T·B × H)   d loss / d H_t, output part then + recurrent part
        DPre = _be.Zeros(tb, h);               // (T·B × H)   d loss / d pre-activation
        DH0 = _be.Zeros(batch, h);             // (B × H)     d loss / d H_0 (only when asked)
        RowLoss = _be.Zeros(tb, 1);            // (T·B × 1)   −log p[label] per row, summed by AccumulateLoss
        if (Input == InputMode.OneHotGemm) OneHot = _be.Zeros(tb, v); // (T·B × V)
    }

    public int Batch { get; }
    public int Steps { get; }
    public InputMode Input { get; }
    public RnnModel Model => _m;

    public Tensor Pre { get; }
    public Tensor Hs { get; }
    public Tensor Logits { get; }
    public Tensor DLogits { get; }
    public Tensor DH { get; }
    public Tensor DPre { get; }
    public Tensor DH0 { get; }
    public Tensor RowLoss { get; }
    public Tensor? OneHot { get; }

    /// <summary>The initial state H_0 (B × H).</summary>
    public Mat State0 => Hs.RowRange(0, Batch);

    /// <summary>H_T, the state after the last step (B × H).</summary>
    public Mat StateT => Hs.RowRange(Steps * Batch, Batch);

    Mat StepRows(Tensor t, int step) => t.RowRange(step * Batch, Batch);

    /// <summary>Zeroes H_0 (random sampling: every minibatch starts from zeros; consecutive: every epoch).</summary>
    public void ResetState() => _be.Zero(State0);

    /// <summary>H_0 ← H_T: consecutive sampling carries the state (detached: gradients stop at the minibatch edge).</summary>
    public void CarryState() => _be.Copy(StateT, State0);

    /// <summary>
    /// Forward over T steps, loss (accumulated on the backend) and d loss / d logits for the mean loss.
    /// The recurrence is sequential; the output layer of the steps already done runs beside it
    /// (<see cref="IBackend.Overlap"/>): each block waits until the foreground has published its last step.
    /// </summary>
    public void Forward(IdxView x, IdxView y)
    {
        int tb = Steps * Batch;
        // Input product for all T steps at once, hoisted out of the recurrence.
        if (Input == InputMode.Gather) _be.GatherRows(x, _m.Wxh, Pre.All);
        else
        {
            _be.OneHotScatter(x, OneHot!.All);
            _be.Gemm(false, false, 1f, OneHot.All, _m.Wxh.All, 0f, Pre.All);
        }
        var stepsDone = new int[1];
        int perBlock = Math.Clamp(_be.OverlapBlock / Batch, 1, Steps);
        var outputBlocks = new List<Action>();
        for (int s0 = 0; s0 < Steps; s0 += perBlock)
        {
            int first = s0, count = Math.Min(perBlock, Steps - s0);
            outputBlocks.Add(() =>
            {
                var spin = new SpinWait();
                while (Volatile.Read(ref stepsDone[0]) < first + count) spin.SpinOnce(sleep1Threshold: -1);
                int r0 = first * Batch, n = count * Batch;
                _be.OutputLayerForward(Hs.RowRange(Batch + r0, n), _m.Whq, _m.Bq, new IdxView(y.Buffer, y.Offset + r0, n),
                    Logits.RowRange(r0, n), DLogits.RowRange(r0, n), 1f / tb, RowLoss.RowRange(r0, n)); // logits without b_q, dO
            });
        }
        _be.Overlap(() =>
        {
            for (int t = 0; t < Steps; t++)
            {
                var pre = StepRows(Pre, t);
                _be.Gemm(false, false, 1f, StepRows(Hs, t), _m.Whh.All, 1f, pre);      // pre += H_{t-1}·W_hh
                _be.BiasActivationForward(_act, pre, _m.Bh, _m.Bh2, StepRows(Hs, t + 1)); // H_t = tanh(pre + b)
                Volatile.Write(ref stepsDone[0], t + 1);
            }
        }, outputBlocks);
        _be.AccumulateLoss(RowLoss.All);
    }

    /// <summary>
    /// Backpropagation through time; fills every gradient of the model (and dH_0 when asked). dW_hq and db_q need only
    /// dO and H, so they are computed in column blocks beside the backward recurrence.
    /// </summary>
    public void Backward(IdxView x, bool wantDH0 = false)
    {
        int tb = Steps * Batch, v = _m.Spec.Vocab;
        var outputs = Hs.RowRange(Batch, tb);
        _be.Gemm(false, true, 1f, DLogits.All, _m.Whq.All, 0f, DH.All);   // dH = dO·W_hqᵀ (T·B × H), output part
        int perBlock = (int)Math.Min(2L * _be.OverlapBlock, v);
        var outputGrads = new List<Action>();
        for (int c0 = 0; c0 < v; c0 += perBlock)
        {
            int first = c0, n = Math.Min(perBlock, v - c0);
            outputGrads.Add(() =>
            {
                var dO = DLogits.All.ColumnRange(first, n);
                _be.Gemm(true, false, 1f, outputs, dO, 0f, _m.DWhq.All.ColumnRange(first, n)); // dW_hq = Hᵀ·dO (H × V)
                _be.ColumnSum(dO, _m.DBq.All.ColumnRange(first, n));                         // db_q = Σ_rows dO
            });
        }
        _be.Overlap(() =>
        {
            for (int t = Steps - 1; t >= 0; t--)
            {
                var dh = StepRows(DH, t);
                if (t < Steps - 1)
                    _be.Gemm(false, true, 1f, StepRows(DPre, t + 1), _m.Whh.All, 1f, dh); // dH_t += dPre_{t+1}·W_hhᵀ
                _be.ActivationBackward(_act, dh, StepRows(Hs, t + 1), StepRows(DPre, t));
            }
            _be.ColumnSum(DPre.All, _m.DBh.All);
        }, outputGrads);
        if (_m.DBh2 != null) _be.Copy(_m.DBh.All, _m.DBh2.All);            // both nn.RNN biases get the same gradient
        _be.Gemm(true, false, 1f, Hs.RowRange(0, tb), DPre.All, 0f, _m.DWhh.All); // dW_hh = H_{t-1}ᵀ·dPre (H × H)
        if (Input == InputMode.Gather)
        {
            _be.Zero(_m.DWxh.All);
            _be.ScatterAddRows(x, DPre.All, _m.DWxh);                      // dW_xh[x_r] += dPre_r
        }
        else _be.Gemm(true, false, 1f, OneHot!.All, DPre.All, 0f, _m.DWxh.All); // dW_xh = onehotᵀ·dPre (V × H)
        if (wantDH0) _be.Gemm(false, true, 1f, StepRows(DPre, 0), _m.Whh.All, 0f, DH0.All);
    }

    /// <summary>One training step: forward, backward, global-norm clip (θ ≤ 0: none), optimizer update.</summary>
    public void TrainStep(IdxView x, IdxView y, float clipTheta, IOptimizer optimizer)
    {
        Forward(x, y);
        Backward(x);
        _be.ComputeClipScale(_m.Grads, clipTheta);
        optimizer.Step(_m);
    }

    public void Dispose()
    {
        foreach (var t in new[] { Pre, Hs, Logits, DLogits, DH, DPre, DH0, RowLoss, OneHot }) t?.Dispose();
    }
}
