using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>
/// The one truncated-BPTT driver, written against <see cref="IBackend"/> so the CPU and CUDA backends share it, for
/// RNN, GRU and LSTM cells and stacked layers. All buffers are time-major: row t·B + b is time step t of batch row b
/// (the book's <c>torch.cat(outputs)</c> order). Per minibatch it issues only backend ops; nothing is read back.
/// Per layer and step: one GEMM for all gates (H_{t−1}·W_hh) and one fused gate kernel; the input products of all T
/// steps are one GEMM (or a row gather for the one-hot layer 0), hoisted out of the recurrence.
/// </summary>
public sealed class BpttDriver : IDisposable
{
    /// <summary>One layer's workspace. G·H columns hold the gate blocks side by side.</summary>
    sealed class LayerBuffers : IDisposable
    {
        public required Tensor Pre;     // (T·B × G·H) x·W_x; RNN/LSTM: + h·W_h accumulated per step (no biases)
        public Tensor? HProj;           // (T·B × G·H) GRU: h_{t−1}·W_h per step
        public Tensor? Gates;           // (T·B × G·H) GRU r,z,n / LSTM i,f,g,o, activated
        public required Tensor Hs;      // ((T+1)·B × H) rows [0, B) = H_0, then H_1 … H_T
        public Tensor? Cs;              // ((T+1)·B × H) LSTM cell states, same layout
        public required Tensor DH;      // (T·B × H) d loss / d H_t: from above, plus the recurrent part
        public required Tensor DPre;    // (T·B × G·H) d loss / d (x·W_x + b_x)
        public Tensor? DHProj;          // (T·B × G·H) GRU: d loss / d (h·W_h + b_h)
        public Tensor? DC;              // (B × H) LSTM: d loss / d c carried backwards
        public required Tensor DH0;     // (B × H) d loss / d H_0 (only when asked)
        public Tensor? DC0;             // (B × H) LSTM: d loss / d C_0 (only when asked)
        public Tensor? RH;              // (T·B × H) book's GRU: r_t ⊙ h_{t−1}, the candidate's hidden input
        public Tensor? DRH;             // (B × H) book's GRU: d loss / d (r ⊙ h_{t−1}) of the current step

        public void Dispose()
        {
            foreach (var t in new[] { Pre, HProj, Gates, Hs, Cs, DH, DPre, DHProj, DC, DH0, DC0, RH, DRH }) t?.Dispose();
        }
    }

    readonly IBackend _be;
    readonly RnnModel _m;
    readonly ModelSpec _spec;
    readonly LayerBuffers[] _l;

    public BpttDriver(RnnModel model, int batch, int steps, InputMode? inputMode = null)
    {
        if (batch < 1 || steps < 1) throw new ArgumentOutOfRangeException(nameof(batch));
        _m = model;
        _be = model.Backend;
        _spec = model.Spec;
        Batch = batch;
        Steps = steps;
        Input = inputMode ?? _be.DefaultInputMode;
        int tb = steps * batch, h = _spec.Hidden, gh = _spec.Gates * h, v = _spec.Vocab;
        bool gru = _spec.Cell == CellKind.Gru, lstm = _spec.Cell == CellKind.Lstm;
        _l = new LayerBuffers[_spec.Layers];
        for (int l = 0; l < _spec.Layers; l++)
            _l[l] = new LayerBuffers
            {
                Pre = _be.Zeros(tb, gh), HProj = gru ? _be.Zeros(tb, gh) : null, Gates = gru || lstm ? _be.Zeros(tb, gh) : null,
                Hs = _be.Zeros((steps + 1) * batch, h), Cs = lstm ? _be.Zeros((steps + 1) * batch, h) : null,
                DH = _be.Zeros(tb, h), DPre = _be.Zeros(tb, gh), DHProj = gru ? _be.Zeros(tb, gh) : null,
                DC = lstm ? _be.Zeros(batch, h) : null, DH0 = _be.Zeros(batch, h), DC0 = lstm ? _be.Zeros(batch, h) : null,
                RH = _spec.GruResetBeforeMatmul ? _be.Zeros(tb, h) : null, DRH = _spec.GruResetBeforeMatmul ? _be.Zeros(batch, h) : null,
            };
        Logits = _be.Zeros(tb, v);             // (T·B × V)   H_top·W_hq, without b_q (the softmax kernel adds it)
        DLogits = _be.Zeros(tb, v);            // (T·B × V)   d loss / d logits
        RowLoss = _be.Zeros(tb, 1);            // (T·B × 1)   −log p[label] per row, summed by AccumulateLoss
        if (Input == InputMode.OneHotGemm) OneHot = _be.Zeros(tb, v); // (T·B × V)
    }

    public int Batch { get; }
    public int Steps { get; }
    public InputMode Input { get; }
    public RnnModel Model => _m;
    public int Layers => _l.Length;

    public Tensor Logits { get; }
    public Tensor DLogits { get; }
    public Tensor RowLoss { get; }
    public Tensor? OneHot { get; }

    /// <summary>Top layer's hidden states, ((T+1)·B × H), rows [0, B) = H_0.</summary>
    public Tensor Hs => _l[^1].Hs;
    public Tensor LayerHs(int layer) => _l[layer].Hs;
    public Tensor? LayerCs(int layer) => _l[layer].Cs;

    /// <summary>Layer 0's initial state H_0 (B × H) — the only one for a one-layer model.</summary>
    public Mat State0 => H0(0);
    public Mat H0(int layer) => _l[layer].Hs.RowRange(0, Batch);
    public Mat HT(int layer) => _l[layer].Hs.RowRange(Steps * Batch, Batch);
    public Mat? C0(int layer) => _l[layer].Cs?.RowRange(0, Batch);
    public Mat? CT(int layer) => _l[layer].Cs?.RowRange(Steps * Batch, Batch);

    /// <summary>The top layer's state after the last step (B × H).</summary>
    public Mat StateT => HT(_l.Length - 1);

    public Tensor DH0 => _l[0].DH0;
    public Tensor DLayerH0(int layer) => _l[layer].DH0;
    public Tensor? DLayerC0(int layer) => _l[layer].DC0;

    Mat Rows(Tensor t, int step) => t.RowRange(step * Batch, Batch);

    /// <summary>Zeroes every layer's H_0 (and C_0): random sampling does this per minibatch, consecutive per epoch.</summary>
    public void ResetState()
    {
        for (int l = 0; l < _l.Length; l++)
        {
            _be.Zero(H0(l));
            if (C0(l) is Mat c) _be.Zero(c);
        }
    }

    /// <summary>H_0 ← H_T (and C): consecutive sampling carries the state (detached: gradients stop at the edge).</summary>
    public void CarryState()
    {
        for (int l = 0; l < _l.Length; l++)
        {
            _be.Copy(HT(l), H0(l));
            if (CT(l) is Mat ct) _be.Copy(ct, C0(l)!.Value);
        }
    }

    /// <summary>x·W_x for all T steps of a layer: a row gather (or one-hot GEMM) for layer 0, a GEMM above.</summary>
    void InputProjection(int l, IdxView x)
    {
        var pre = _l[l].Pre.All;
        var wx = _m.Layers[l].Wx;
        if (l > 0) _be.Gemm(false, false, 1f, _l[l - 1].Hs.RowRange(Batch, Steps * Batch), wx.All, 0f, pre);
        else if (Input == InputMode.Gather) _be.GatherRows(x, wx, pre);
        else
        {
            _be.OneHotScatter(x, OneHot!.All);
            _be.Gemm(false, false, 1f, OneHot.All, wx.All, 0f, pre);
        }
    }

    /// <summary>The recurrence of one layer over T steps; publishes each finished step in <paramref name="stepsDone"/>.</summary>
    void Recurrence(int l, int[]? stepsDone)
    {
        var b = _l[l];
        var p = _m.Layers[l];
        for (int t = 0; t < Steps; t++)
        {
            var hPrev = Rows(b.Hs, t);
            var h = Rows(b.Hs, t + 1);
            var pre = Rows(b.Pre, t);
            switch (_spec.Cell)
            {
                case CellKind.Rnn:
                    _be.Gemm(false, false, 1f, hPrev, p.Wh.All, 1f, pre);                 // pre += H_{t-1}·W_hh
                    _be.BiasActivationForward(_spec.Activation, pre, p.Bx, p.Bh, h);     // H_t = tanh(pre + b)
                    break;
                case CellKind.Lstm:
                    _be.Gemm(false, false, 1f, hPrev, p.Wh.All, 1f, pre);                 // all four gates at once
                    _be.LstmForward(pre, p.Bx, p.Bh, Rows(b.Cs!, t), Rows(b.Gates!, t), Rows(b.Cs!, t + 1), h);
                    break;
                case CellKind.Gru when _spec.GruResetBeforeMatmul:
                {
                    // The book's GRU: r, z from h·U_rz; then the candidate's hidden part (r ⊙ h)·U_n.
                    int hd = _spec.Hidden;
                    var hp = Rows(b.HProj!, t);
                    _be.Gemm(false, false, 1f, hPrev, p.Wh.All.ColumnRange(0, 2 * hd), 0f, hp.ColumnRange(0, 2 * hd));
                    _be.GruResetGates(pre, hp, p.Bx, hPrev, Rows(b.Gates!, t), Rows(b.RH!, t));
                    _be.Gemm(false, false, 1f, Rows(b.RH!, t), p.Wh.All.ColumnRange(2 * hd, hd), 0f, hp.ColumnRange(2 * hd, hd));
                    _be.GruCandidate(pre, hp, p.Bx, hPrev, Rows(b.Gates!, t), h);
                    break;
                }
                default:
                {
                    var hp = Rows(b.HProj!, t);
                    _be.Gemm(false, false, 1f, hPrev, p.Wh.All, 0f, hp);                  // r, z, n hidden parts
                    _be.GruForward(pre, hp, p.Bx, p.Bh, hPrev, Rows(b.Gates!, t), h);
                    break;
                }
            }
            if (stepsDone != null) Volatile.Write(ref stepsDone[0], t + 1);
        }
    }

    /// <summary>Runs the T steps of every layer from the current state, without the output layer (generation).</summary>
    public void Advance(IdxView x)
    {
        for (int l = 0; l < _l.Length; l++)
        {
            InputProjection(l, x);
            Recurrence(l, null);
        }
    }

    /// <summary>
    /// Forward over T steps, loss (accumulated on the backend) and d loss / d logits for the mean loss.
    /// The top layer's recurrence is sequential; the output layer of the steps already done runs beside it
    /// (<see cref="IBackend.Overlap"/>): each block waits until the foreground has published its last step.
    /// </summary>
    public void Forward(IdxView x, IdxView y)
    {
        int tb = Steps * Batch, top = _l.Length - 1;
        for (int l = 0; l < top; l++)
        {
            InputProjection(l, x);
            Recurrence(l, null);
        }
        InputProjection(top, x);
        var stepsDone = new int[1];
        var hs = _l[top].Hs;
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
                _be.OutputLayerForward(hs.RowRange(Batch + r0, n), _m.Whq, _m.Bq, new IdxView(y.Buffer, y.Offset + r0, n),
                    Logits.RowRange(r0, n), DLogits.RowRange(r0, n), 1f / tb, RowLoss.RowRange(r0, n)); // logits without b_q, dO
            });
        }
        _be.Overlap(() => Recurrence(top, stepsDone), outputBlocks);
        _be.AccumulateLoss(RowLoss.All);
    }

    /// <summary>
    /// Backpropagation through time, top layer first; fills every gradient of the model (and dH_0, dC_0 of every
    /// layer when asked). dW_hq and db_q need only dO and H, so they are computed in column blocks beside the top
    /// layer's backward recurrence.
    /// </summary>
    public void Backward(IdxView x, bool wantDH0 = false)
    {
        int tb = Steps * Batch, v = _spec.Vocab, top = _l.Length - 1;
        var outputs = _l[top].Hs.RowRange(Batch, tb);
        _be.Gemm(false, true, 1f, DLogits.All, _m.Whq.All, 0f, _l[top].DH.All);  // dH_top = dO·W_hqᵀ (T·B × H)
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
        for (int l = top; l >= 0; l--)
        {
            int layer = l;
            if (l == top) _be.Overlap(() => RecurrenceBackward(layer, wantDH0), outputGrads);
            else RecurrenceBackward(l, wantDH0);
            LayerWeightGradients(l, x);
        }
    }

    /// <summary>Steps T−1 … 0 of one layer: each step's pre-activation gradients from dH_t and the gate values.</summary>
    void RecurrenceBackward(int l, bool wantDH0)
    {
        var b = _l[l];
        var p = _m.Layers[l];
        if (b.DC != null) _be.Zero(b.DC.All);
        if (_spec.Cell == CellKind.Gru) _be.Zero(b.DH0.All); // gru_backward adds z·dh into dH_{t−1}; for t = 0 that is DH0
        for (int t = Steps - 1; t >= 0; t--)
        {
            var dh = Rows(b.DH, t);
            var dpre = Rows(b.DPre, t);
            switch (_spec.Cell)
            {
                case CellKind.Rnn:
                    if (t < Steps - 1) _be.Gemm(false, true, 1f, Rows(b.DPre, t + 1), p.Wh.All, 1f, dh); // dH_t += dPre_{t+1}·W_hhᵀ
                    _be.ActivationBackward(_spec.Activation, dh, Rows(b.Hs, t + 1), dpre);
                    break;
                case CellKind.Lstm:
                    if (t < Steps - 1) _be.Gemm(false, true, 1f, Rows(b.DPre, t + 1), p.Wh.All, 1f, dh);
                    _be.LstmBackward(dh, b.DC!.All, Rows(b.Gates!, t), Rows(b.Cs!, t), Rows(b.Cs!, t + 1), dpre);
                    break;
                case CellKind.Gru when _spec.GruResetBeforeMatmul:
                {
                    int hd = _spec.Hidden;
                    var uRZ = p.Wh.All.ColumnRange(0, 2 * hd);
                    if (t < Steps - 1) _be.Gemm(false, true, 1f, Rows(b.DHProj!, t + 1).ColumnRange(0, 2 * hd), uRZ, 1f, dh);
                    var dPrev = t > 0 ? Rows(b.DH, t - 1) : b.DH0.All;
                    var dhp = Rows(b.DHProj!, t);
                    _be.GruCandidateBackward(dh, Rows(b.Gates!, t), Rows(b.Hs, t), dpre, dhp, dPrev);        // z, n; z ⊙ dh
                    _be.Gemm(false, true, 1f, dhp.ColumnRange(2 * hd, hd), p.Wh.All.ColumnRange(2 * hd, hd), 0f, b.DRH!.All);
                    _be.GruResetBackward(b.DRH!.All, Rows(b.Gates!, t), Rows(b.Hs, t), dpre, dhp, dPrev);  // r; r ⊙ d(rh)
                    break;
                }
                default:
                    if (t < Steps - 1) _be.Gemm(false, true, 1f, Rows(b.DHProj!, t + 1), p.Wh.All, 1f, dh); // + dHProj_{t+1}·W_hhᵀ
                    _be.GruBackward(dh, Rows(b.Gates!, t), Rows(b.HProj!, t), p.Bh, Rows(b.Hs, t), dpre, Rows(b.DHProj!, t),
                        t > 0 ? Rows(b.DH, t - 1) : b.DH0.All);                                   // dH_{t−1} += z ⊙ dH_t
                    break;
            }
        }
        if (!wantDH0) return;
        bool gru = _spec.Cell == CellKind.Gru;
        if (_spec.GruResetBeforeMatmul)
            _be.Gemm(false, true, 1f, Rows(b.DHProj!, 0).ColumnRange(0, 2 * _spec.Hidden), p.Wh.All.ColumnRange(0, 2 * _spec.Hidden), 1f, b.DH0.All);
        else
            _be.Gemm(false, true, 1f, gru ? Rows(b.DHProj!, 0) : Rows(b.DPre, 0), p.Wh.All, gru ? 1f : 0f, b.DH0.All);
        if (b.DC0 != null) _be.Copy(b.DC!.All, b.DC0.All);
    }

    /// <summary>One layer's weight and bias gradients as single products over all T·B rows; and dH for the layer below.</summary>
    void LayerWeightGradients(int l, IdxView x)
    {
        var b = _l[l];
        var p = _m.Layers[l];
        int tb = Steps * Batch;
        var dRec = (b.DHProj ?? b.DPre).All;                                       // d/d(h·W_h + b_h)
        if (_spec.GruResetBeforeMatmul)
        {
            int hd = _spec.Hidden;                                                  // book's GRU: U_n multiplies r ⊙ h
            _be.Gemm(true, false, 1f, b.Hs.RowRange(0, tb), dRec.ColumnRange(0, 2 * hd), 0f, p.DWh.All.ColumnRange(0, 2 * hd));
            _be.Gemm(true, false, 1f, b.RH!.All, dRec.ColumnRange(2 * hd, hd), 0f, p.DWh.All.ColumnRange(2 * hd, hd));
        }
        else _be.Gemm(true, false, 1f, b.Hs.RowRange(0, tb), dRec, 0f, p.DWh.All); // dW_hh = H_{t-1}ᵀ·dRec
        _be.ColumnSum(b.DPre.All, p.DBx.All);                                       // db_x (the book's b)
        if (p.DBh != null)
        {
            if (b.DHProj != null) _be.ColumnSum(b.DHProj.All, p.DBh.All);         // GRU: b_hn's gradient differs
            else _be.Copy(p.DBx.All, p.DBh.All);                                    // RNN/LSTM: both biases alike
        }
        if (l > 0)
        {
            var below = _l[l - 1].Hs.RowRange(Batch, tb);
            _be.Gemm(true, false, 1f, below, b.DPre.All, 0f, p.DWx.All);           // dW_x = H_belowᵀ·dPre
            _be.Gemm(false, true, 1f, b.DPre.All, p.Wx.All, 0f, _l[l - 1].DH.All); // dH_below = dPre·W_xᵀ
        }
        else if (Input == InputMode.Gather)
        {
            _be.Zero(p.DWx.All);
            _be.ScatterAddRows(x, b.DPre.All, p.DWx);                               // dW_xh[x_r] += dPre_r
        }
        else _be.Gemm(true, false, 1f, OneHot!.All, b.DPre.All, 0f, p.DWx.All);   // dW_xh = onehotᵀ·dPre (V × G·H)
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
        foreach (var b in _l) b.Dispose();
        foreach (var t in new[] { Logits, DLogits, RowLoss, OneHot }) t?.Dispose();
    }
}
