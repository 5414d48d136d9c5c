using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Model;

/// <summary>
/// The book's scratch GRU (d2l 6.7), which applies the reset gate before the product:
/// n = tanh(x·W_n + b_n + (r ⊙ h)·U_n). A step takes two GEMMs and two kernels: h·U_rz, then <c>gru_reset_gates</c>
/// (r, z and r ⊙ h), then (r ⊙ h)·U_n, then <c>gru_candidate</c>; backward <c>gru_candidate_backward</c>,
/// d(r ⊙ h) = dn·U_nᵀ, <c>gru_reset_backward</c>.
/// </summary>
public sealed class BookGruCell(ModelSpec spec) : RecurrentCell(spec)
{
    public override int Gates => 3;
    public override string? TorchModule => null; // (r ⊙ h)·U_n: nn.GRU computes r ⊙ (h·U_n + b_hn), so export refuses it
    public override (int GateSized, int HiddenSized) WorkspaceBuffers => (5, 3); // + hproj, gates, dhproj; + r ⊙ h (drh: B × H)

    public override CellLayer CreateLayer(IBackend be, LayerTensors p, int batch, int steps) => new Layer(be, p, Spec, batch, steps);

    sealed class Layer : CellLayer
    {
        readonly Tensor _hproj;   // (T·B × 3H) r, z: h_{t−1}·U_rz; n: (r ⊙ h_{t−1})·U_n
        readonly Tensor _gates;   // (T·B × 3H) r, z, n
        readonly Tensor _dhproj;  // (T·B × 3H) d loss / d hproj
        readonly Tensor _rh;      // (T·B × H) r_t ⊙ h_{t−1}, the candidate's hidden input
        readonly Tensor _drh;     // (B × H) d loss / d (r ⊙ h_{t−1}) of the current step

        public Layer(IBackend be, LayerTensors p, ModelSpec spec, int batch, int steps) : base(be, p, spec, batch, steps)
        {
            _hproj = be.Zeros(steps * batch, 3 * Hidden);
            _gates = be.Zeros(steps * batch, 3 * Hidden);
            _dhproj = be.Zeros(steps * batch, 3 * Hidden);
            _rh = be.Zeros(steps * batch, Hidden);
            _drh = be.Zeros(batch, Hidden);
        }

        public override Tensor DRec => _dhproj;
        protected override IEnumerable<Tensor?> Buffers => base.Buffers.Concat([_hproj, _gates, _dhproj, _rh, _drh]);

        Mat URZ => P.Wh.All.ColumnRange(0, 2 * Hidden);
        Mat UN => P.Wh.All.ColumnRange(2 * Hidden, Hidden);

        public override void ForwardStep(IBackend be, int t)
        {
            int hd = Hidden;
            var hPrev = Rows(Hs, t);
            var hp = Rows(_hproj, t);
            be.Gemm(false, false, 1f, hPrev, URZ, 0f, hp.ColumnRange(0, 2 * hd));
            be.GruResetGates(Rows(Pre, t), hp, P.Bx, hPrev, Rows(_gates, t), Rows(_rh, t));
            be.Gemm(false, false, 1f, Rows(_rh, t), UN, 0f, hp.ColumnRange(2 * hd, hd));
            be.GruCandidate(Rows(Pre, t), hp, P.Bx, hPrev, Rows(_gates, t), Rows(Hs, t + 1));
        }

        public override void BeginBackward(IBackend be) => be.Zero(DH0.All);

        public override void BackwardStep(IBackend be, int t)
        {
            int hd = Hidden;
            var dh = Rows(DH, t);
            if (t < Steps - 1) be.Gemm(false, true, 1f, Rows(_dhproj, t + 1).ColumnRange(0, 2 * hd), URZ, 1f, dh);
            var dPrev = t > 0 ? Rows(DH, t - 1) : DH0.All;
            var dhp = Rows(_dhproj, t);
            be.GruCandidateBackward(dh, Rows(_gates, t), Rows(Hs, t), Rows(DPre, t), dhp, dPrev);    // z, n; z ⊙ dh
            be.Gemm(false, true, 1f, dhp.ColumnRange(2 * hd, hd), UN, 0f, _drh.All);
            be.GruResetBackward(_drh.All, Rows(_gates, t), Rows(Hs, t), Rows(DPre, t), dhp, dPrev); // r; r ⊙ d(rh)
        }

        public override void EndBackward(IBackend be)
        {
            if (WantDH0) be.Gemm(false, true, 1f, Rows(_dhproj, 0).ColumnRange(0, 2 * Hidden), URZ, 1f, DH0.All);
        }

        /// <summary>U_rz multiplies h, U_n multiplies r ⊙ h: two products.</summary>
        public override void HiddenWeightGradient(IBackend be)
        {
            int hd = Hidden, tb = Steps * Batch;
            be.Gemm(true, false, 1f, Hs.RowRange(0, tb), _dhproj.All.ColumnRange(0, 2 * hd), 0f, P.DWh.All.ColumnRange(0, 2 * hd));
            be.Gemm(true, false, 1f, _rh.All, _dhproj.All.ColumnRange(2 * hd, hd), 0f, P.DWh.All.ColumnRange(2 * hd, hd));
        }
    }
}
