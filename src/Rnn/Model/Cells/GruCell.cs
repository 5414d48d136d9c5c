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

    sealed class Layer : GatedCellLayer
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

        // The steps are GatedSteps' on these tensors (GatedCellLayer); gru_backward adds z·dh into dH_{t−1}, for t = 0
        // into DH0, which the backward therefore zeroes first.
        public override GatedRecurrence Gated =>
            new(GatedCell.Gru, Batch, Hidden, Pre, Hs, _gates, null, _hproj, P.Wh, P.Bx, P.Bh, DH, DPre, _dhproj, null, DH0, null, WantDH0);
    }
}
