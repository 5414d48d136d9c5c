using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Model;

/// <summary>
/// The one truncated-BPTT driver, written against <see cref="IBackend"/> so the CPU and CUDA backends share it, for
/// every cell (<see cref="RecurrentCell"/>: it names none) and stacked layers. All buffers are time-major: row t·B + b
/// is time step t of batch row b (the book's <c>torch.cat(outputs)</c> order). Per minibatch it issues only backend
/// ops; nothing is read back. Per layer, the input products of all T steps are one GEMM (or a row gather for the
/// one-hot layer 0), hoisted out of the recurrence, and the recurrence itself is one backend op
/// (<see cref="IBackend.RecurrenceForward"/>/<see cref="IBackend.RecurrenceBackward"/>), by default the cell's steps.
/// Training (<c>Training.Trainer</c>) and generation (<c>Generation</c>) both drive the model through it.
/// </summary>
public sealed class BpttDriver : IDisposable
{
    readonly IBackend _be;
    readonly RnnModel _m;
    readonly CellLayer[] _l;
    readonly float _dropout;
    readonly ulong _dropoutSeed;
    readonly Tensor?[] _dropped, _masks; // per layer l ≥ 1: its input H_{l−1} ⊙ mask, and the mask (T·B × H)
    bool _droppedNow;                    // the last Forward applied dropout (so Backward must too)

    /// <param name="dropout">Probability of zeroing each input of the layers above the first during a training forward
    /// (nn.RNN's <c>dropout</c>); the masks are drawn from <paramref name="seed"/> and the count at <see cref="DropoutCount"/>.</param>
    public BpttDriver(RnnModel model, int batch, int steps, InputMode? inputMode = null, float dropout = 0f, ulong seed = 0)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "at least one row");
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "at least one step");
        _m = model;
        _be = model.Backend;
        Batch = batch;
        Steps = steps;
        Input = inputMode ?? _be.DefaultInputMode;
        var cell = model.Spec.CellType;
        _l = model.Layers.Select(p => cell.CreateLayer(_be, p, batch, steps)).ToArray();
        int tb = steps * batch, v = model.Spec.Vocab, w = model.OutputWidth;
        Logits = _be.Zeros(tb, w);             // (T·B × V')  H_top·W_hq, without b_q (the softmax kernel adds it); V' = V padded
        DLogits = _be.Zeros(tb, w);            // (T·B × V')  d loss / d logits (0 in the pad columns)
        RowLoss = _be.Zeros(tb, 1);            // (T·B × 1)   −log p[label] per row, summed by AccumulateLoss
        if (Input == InputMode.OneHotGemm) OneHot = _be.Zeros(tb, v); // (T·B × V)
        _dropout = dropout;
        _dropoutSeed = seed ^ 0xD50F_0D15_EA5E_0001UL;
        _dropped = new Tensor?[_l.Length];
        _masks = new Tensor?[_l.Length];
        if (dropout > 0)
            for (int l = 1; l < _l.Length; l++)
            {
                _dropped[l] = _be.Zeros(tb, model.Spec.Hidden);
                _masks[l] = _be.Zeros(tb, model.Spec.Hidden);
            }
    }

    /// <summary>Called once per backward pass as soon as dW_hq and db_q are final (on the CPU, from the thread that
    /// finished them, while the top layer's backward recurrence may still run): data-parallel ranks start reducing them.</summary>
    public Action<IBackend>? OutputGradientsReady { get; set; }

    /// <summary>Told after each backward step of every layer (on the host: a reduction started by
    /// <see cref="OutputGradientsReady"/> is given a chance to progress while the recurrence computes).</summary>
    public Action? BackwardStepDone { get; set; }

    /// <summary>Where on the backend the run's minibatch number is (2 ints, low half first): the dropout masks' draw.
    /// <c>Training.TrainingStep</c> points it at its step counters, which advance on the backend with every step.</summary>
    public IdxView? DropoutCount { get; set; }

    public int Batch { get; }
    public int Steps { get; }
    public InputMode Input { get; }
    public RnnModel Model => _m;
    public int Layers => _l.Length;

    /// <summary>Layer <paramref name="layer"/>'s recurrence alone, forward or backward, on whatever its buffers hold (for
    /// timing it: the per-step path accumulates into its inputs, so the buffers are garbage afterwards).</summary>
    public void RunRecurrenceOnly(int layer, bool backward)
    {
        if (backward) _be.RecurrenceBackward(_l[layer]);
        else _be.RecurrenceForward(_l[layer], null);
    }

    /// <summary>How the backend runs each layer's recurrence ("persistent (…)", "per-step (why)"), for the run's header;
    /// equal descriptions of consecutive layers are said once.</summary>
    public string DescribeRecurrence()
    {
        var each = _l.Select(l => _be.DescribeRecurrence(l)).ToArray();
        return each.Distinct().Count() == 1 ? each[0] + (each.Length > 1 ? " in every layer" : "")
            : string.Join(", ", each.Select((d, i) => $"layer {i + 1} {d}"));
    }

    /// <summary>The plan the recurrence runs with (every layer has the same shape, so the first layer's; null on a
    /// backend without a choice): what a checkpoint records.</summary>
    public string? RecurrencePlan() => _be.RecurrencePlanId(_l[0]);

    /// <summary>(T·B × V') the logits without b_q, V' = <see cref="RnnModel.OutputWidth"/> (V padded on the GPU).</summary>
    public Tensor Logits { get; }

    /// <summary>The logits without b_q, (T·B × V): the pad columns dropped (waits for the backend).</summary>
    public float[] LogitsToHost() => _m.DropPads(_be.ToArray(Logits), Logits.Rows);
    public Tensor DLogits { get; }
    public Tensor RowLoss { get; }
    public Tensor? OneHot { get; }

    /// <summary>Top layer's hidden states, ((T+1)·B × H), rows [0, B) = H_0.</summary>
    public Tensor Hs => _l[^1].Hs;

    public Mat H0(int layer) => _l[layer].H0;
    public Mat HT(int layer) => _l[layer].HT;
    public Mat? C0(int layer) => _l[layer].C0;
    public Mat? CT(int layer) => _l[layer].CT;

    /// <summary>The top layer's state after the last step (B × H).</summary>
    public Mat StateT => HT(_l.Length - 1);

    public Tensor DH0 => _l[0].DH0;
    public Tensor DLayerH0(int layer) => _l[layer].DH0;
    public Tensor? DLayerC0(int layer) => _l[layer].DC0;

    /// <summary>Zeroes every layer's H_0 (and C_0): random sampling does this per minibatch, consecutive per epoch.</summary>
    public void ResetState()
    {
        foreach (var l in _l)
        {
            _be.Zero(l.H0);
            if (l.C0 is Mat c) _be.Zero(c);
        }
    }

    /// <summary>H_0 ← H_T (and C): consecutive sampling carries the state (detached: gradients stop at the edge).</summary>
    public void CarryState()
    {
        foreach (var l in _l)
        {
            _be.Copy(l.HT, l.H0);
            if (l.CT is Mat ct) _be.Copy(ct, l.C0!.Value);
        }
    }

    /// <summary>
    /// x·W_x for all T steps of a layer: a row gather (or one-hot GEMM) for layer 0, a GEMM above — on the layer below's
    /// outputs, or on those outputs with dropout applied when <paramref name="dropout"/>.
    /// </summary>
    void InputProjection(int l, IdxView x, bool dropout)
    {
        var pre = _l[l].Pre.All;
        var wx = _m.Layers[l].Wx;
        if (l > 0)
        {
            var below = _l[l - 1].Hs.RowRange(Batch, Steps * Batch);
            if (dropout)
            {
                var count = DropoutCount ?? throw new InvalidOperationException("dropout draws its masks from the step counters: train through TrainingStep");
                _be.DropoutForward(below, _dropout, _dropoutSeed + (ulong)l, count, _dropped[l]!.All, _masks[l]!.All);
                below = _dropped[l]!.All;
            }
            _be.Gemm(false, false, 1f, below, wx.All, 0f, pre);
        }
        else if (Input == InputMode.Gather) _be.GatherRows(x, wx, pre);
        else
        {
            _be.OneHotScatter(x, OneHot!.All);
            _be.Gemm(false, false, 1f, OneHot.All, wx.All, 0f, pre);
        }
    }

    /// <summary>Runs the T steps of every layer from the current state, without the output layer (generation).</summary>
    public void Advance(IdxView x)
    {
        for (int l = 0; l < _l.Length; l++)
        {
            InputProjection(l, x, dropout: false);
            _be.RecurrenceForward(_l[l], null);
        }
    }

    /// <summary>
    /// Forward over T steps, loss (accumulated on the backend) and d loss / d logits for the mean loss.
    /// The top layer's recurrence is sequential; the output layer of the steps already done runs beside it
    /// (<see cref="IBackend.Overlap"/>): each block waits until the recurrence has published its last step.
    /// <paramref name="training"/>: apply dropout (when the driver has it); evaluation passes false.
    /// </summary>
    public void Forward(IdxView x, IdxView y, bool training = true)
    {
        int tb = Steps * Batch, top = _l.Length - 1;
        _droppedNow = training && _dropout > 0;
        for (int l = 0; l < top; l++)
        {
            InputProjection(l, x, _droppedNow);
            _be.RecurrenceForward(_l[l], null);
        }
        InputProjection(top, x, _droppedNow);
        var progress = new StepProgress();
        var hs = _l[top].Hs;
        int perBlock = Math.Clamp(OverlapSchedule.ForwardRows(_be, _l[top], Batch) / Batch, 1, Steps);
        var outputBlocks = new List<Action<IBackend>>();
        for (int s0 = 0; s0 < Steps; s0 += perBlock)
        {
            int first = s0, count = Math.Min(perBlock, Steps - s0);
            outputBlocks.Add(be =>
            {
                progress.WaitFor(be, first + count);
                int r0 = first * Batch, n = count * Batch;
                be.OutputLayerForward(hs.RowRange(Batch + r0, n), _m.Whq, _m.Bq, new IdxView(y.Buffer, y.Offset + r0, n),
                    Logits.RowRange(r0, n), DLogits.RowRange(r0, n), 1f / tb, RowLoss.RowRange(r0, n)); // logits without b_q, dO
            });
        }
        _be.Overlap(() => _be.RecurrenceForward(_l[top], progress), outputBlocks);
        _be.AccumulateLoss(RowLoss.All);
    }

    /// <summary>
    /// Backpropagation through time, top layer first; fills every gradient of the model (and dH_0, dC_0 of every
    /// layer when asked). dW_hq and db_q need only dO and H, so they are computed in column blocks beside the top
    /// layer's backward recurrence.
    /// </summary>
    public void Backward(IdxView x, bool wantDH0 = false)
    {
        int tb = Steps * Batch, v = _m.OutputWidth, top = _l.Length - 1;
        var outputs = _l[top].Hs.RowRange(Batch, tb);
        _be.Gemm(false, true, 1f, DLogits.All, _m.Whq.All, 0f, _l[top].DH.All);  // dH_top = dO·W_hqᵀ (T·B × H)
        int perBlock = OverlapSchedule.BackwardColumns(_be, v);
        var outputGrads = new List<Action<IBackend>>();
        int blocks = (v + perBlock - 1) / perBlock, unfinished = blocks;
        for (int c0 = 0; c0 < v; c0 += perBlock)
        {
            int first = c0, n = Math.Min(perBlock, v - c0);
            outputGrads.Add(be =>
            {
                var dO = DLogits.All.ColumnRange(first, n);
                be.Gemm(true, false, 1f, outputs, dO, 0f, _m.DWhq.All.ColumnRange(first, n)); // dW_hq = Hᵀ·dO (H × V)
                be.ColumnSum(dO, _m.DBq.All.ColumnRange(first, n));                         // db_q = Σ_rows dO
                // The last block's backend computed the last of them (the CUDA side lane orders its blocks on one stream).
                if (Interlocked.Decrement(ref unfinished) == 0) OutputGradientsReady?.Invoke(be);
            });
        }
        bool blocksFirst = OverlapSchedule.OutputGradientsFirst(_be);
        if (blocksFirst) foreach (var block in outputGrads) block(_be);
        for (int l = top; l >= 0; l--)
        {
            var layer = _l[l];
            layer.WantDH0 = wantDH0;
            IRecurrence steps = BackwardStepDone is { } done && _be.RunsOnHost ? new Stepped(layer, done) : layer;
            if (l == top && !blocksFirst) _be.Overlap(() => _be.RecurrenceBackward(steps), outputGrads);
            else _be.RecurrenceBackward(steps);
            LayerWeightGradients(l, x);
        }
    }

    /// <summary>One layer's weight and bias gradients as single products over all T·B rows; and dH for the layer below.</summary>
    void LayerWeightGradients(int l, IdxView x)
    {
        var b = _l[l];
        var p = _m.Layers[l];
        int tb = Steps * Batch;
        b.HiddenWeightGradient(_be);                                                // dW_hh = H_{t-1}ᵀ·dRec
        _be.ColumnSum(b.DPre.All, p.DBx.All);                                       // db_x (the book's b)
        if (p.DBh != null)
        {
            if (b.DRec != b.DPre) _be.ColumnSum(b.DRec.All, p.DBh.All);             // GRU: b_hn's gradient differs
            else _be.Copy(p.DBx.All, p.DBh.All);                                    // RNN/LSTM: both biases alike
        }
        if (l > 0)
        {
            var below = _droppedNow ? _dropped[l]!.All : _l[l - 1].Hs.RowRange(Batch, tb);
            _be.Gemm(true, false, 1f, below, b.DPre.All, 0f, p.DWx.All);           // dW_x = H_belowᵀ·dPre (dropped: its input)
            _be.Gemm(false, true, 1f, b.DPre.All, p.Wx.All, 0f, _l[l - 1].DH.All); // dH_below = dPre·W_xᵀ
            if (_droppedNow) _be.DropoutBackward(_l[l - 1].DH.All, _masks[l]!.All, _l[l - 1].DH.All); // ⊙ mask
        }
        else if (Input == InputMode.Gather)
        {
            _be.Zero(p.DWx.All);
            _be.ScatterAddRows(x, b.DPre.All, p.DWx);                               // dW_xh[x_r] += dPre_r
        }
        else _be.Gemm(true, false, 1f, OneHot!.All, b.DPre.All, 0f, p.DWx.All);   // dW_xh = onehotᵀ·dPre (V × G·H)
    }

    /// <summary>A layer whose backward steps each end with a call (the host's per-step path runs them one by one).</summary>
    sealed class Stepped(CellLayer inner, Action done) : IRecurrence
    {
        public int Steps => inner.Steps;
        public PlainRecurrence? Plain => inner.Plain;
        public void ForwardStep(IBackend be, int t) => inner.ForwardStep(be, t);
        public void BeginBackward(IBackend be) => inner.BeginBackward(be);
        public void BackwardStep(IBackend be, int t)
        {
            inner.BackwardStep(be, t);
            done();
        }
        public void EndBackward(IBackend be) => inner.EndBackward(be);
    }

    public void Dispose()
    {
        foreach (var b in _l) b.Dispose();
        foreach (var t in new[] { Logits, DLogits, RowLoss, OneHot }.Concat(_dropped).Concat(_masks)) t?.Dispose();
    }
}
