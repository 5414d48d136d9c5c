using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Model;

/// <summary>
/// PyTorch's GRU (nn.GRU, the concise models), gates r, z, n: n = tanh(x·W_n + b_in + r ⊙ (h·U_n + b_hn)). Per step
/// one GEMM for the hidden parts of all three gates and one fused kernel (<c>gru_forward</c>, <c>gru_backward</c>).
/// </summary>
public sealed class GruCell(ModelSpec spec) : RecurrentCell(spec)
{
    public override int Gates => 3;
    public override string TorchModule => "nn.GRU";
    public override (int GateSized, int HiddenSized) WorkspaceBuffers => (5, 2); // + hproj, gates, dhproj

    public override CellLayer CreateLayer(IBackend be, LayerTensors p, int batch, int steps) => new Layer(be, p, Spec, batch, steps);

    sealed class Layer : CellLayer
    {
        readonly Tensor _hproj;   // (T·B × 3H) h_{t−1}·W_h per step
        readonly Tensor _gates;   // (T·B × 3H) r, z, n
        readonly Tensor _dhproj;  // (T·B × 3H) d loss / d (h·W_h + b_h)

        public Layer(IBackend be, LayerTensors p, ModelSpec spec, int batch, int steps) : base(be, p, spec, batch, steps)
        {
            _hproj = be.Zeros(steps * batch, 3 * Hidden);
            _gates = be.Zeros(steps * batch, 3 * Hidden);
            _dhproj = be.Zeros(steps * batch, 3 * Hidden);
        }

        public override Tensor DRec => _dhproj;
        protected override IEnumerable<Tensor?> Buffers => base.Buffers.Concat([_hproj, _gates, _dhproj]);

        public override void ForwardStep(IBackend be, int t)
        {
            var hp = Rows(_hproj, t);
            be.Gemm(false, false, 1f, Rows(Hs, t), P.Wh.All, 0f, hp); // r, z, n hidden parts
            be.GruForward(Rows(Pre, t), hp, P.Bx, P.Bh, Rows(Hs, t), Rows(_gates, t), Rows(Hs, t + 1));
        }

        public override void BeginBackward(IBackend be) => be.Zero(DH0.All); // gru_backward adds z·dh into dH_{t−1}; for t = 0 that is DH0

        public override void BackwardStep(IBackend be, int t)
        {
            var dh = Rows(DH, t);
            if (t < Steps - 1) be.Gemm(false, true, 1f, Rows(_dhproj, t + 1), P.Wh.All, 1f, dh); // + dHProj_{t+1}·W_hhᵀ
            be.GruBackward(dh, Rows(_gates, t), Rows(_hproj, t), P.Bh, Rows(Hs, t), Rows(DPre, t), Rows(_dhproj, t),
                t > 0 ? Rows(DH, t - 1) : DH0.All);                                              // dH_{t−1} += z ⊙ dH_t
        }

        public override void EndBackward(IBackend be)
        {
            if (WantDH0) be.Gemm(false, true, 1f, Rows(_dhproj, 0), P.Wh.All, 1f, DH0.All);
        }
    }
}
