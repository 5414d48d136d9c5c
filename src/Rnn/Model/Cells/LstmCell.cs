using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Model;

/// <summary>
/// The LSTM (d2l 6.8, nn.LSTM), gates i, f, g, o: per step one GEMM for all four (h·W_hh accumulated onto the input
/// products) and one fused kernel (<c>lstm_forward</c>; backward <c>lstm_backward</c>).
/// </summary>
public sealed class LstmCell(ModelSpec spec) : RecurrentCell(spec)
{
    public override int Gates => 4;
    public override string TorchModule => "nn.LSTM";
    public override IReadOnlyList<string> CarriedState => ["H", "C"];
    public override (int GateSized, int HiddenSized) WorkspaceBuffers => (3, 3); // + gates; + cell states (dc, dc0: B × H)

    public override CellLayer CreateLayer(IBackend be, LayerTensors p, int batch, int steps) => new Layer(be, p, Spec, batch, steps);

    sealed class Layer : GatedCellLayer
    {
        readonly Tensor _gates;  // (T·B × 4H) i, f, g, o, activated
        readonly Tensor _cs;     // ((T+1)·B × H) cell states, rows [0, B) = C_0
        readonly Tensor _dc;     // (B × H) d loss / d c carried backwards
        readonly Tensor _dc0;    // (B × H) d loss / d C_0 (when asked)

        public Layer(IBackend be, LayerTensors p, ModelSpec spec, int batch, int steps) : base(be, p, spec, batch, steps)
        {
            _gates = be.Zeros(steps * batch, 4 * Hidden);
            _cs = be.Zeros((steps + 1) * batch, Hidden);
            _dc = be.Zeros(batch, Hidden);
            _dc0 = be.Zeros(batch, Hidden);
        }

        public override Tensor Cs => _cs;
        public override Tensor DC0 => _dc0;
        protected override IEnumerable<Tensor?> Buffers => base.Buffers.Concat([_gates, _cs, _dc, _dc0]);

        // The steps are GatedSteps' on these tensors (GatedCellLayer).
        public override GatedRecurrence Gated =>
            new(GatedCell.Lstm, Batch, Hidden, Pre, Hs, _gates, _cs, null, P.Wh, P.Bx, P.Bh, DH, DPre, null, _dc, DH0, _dc0, WantDH0);
    }
}
