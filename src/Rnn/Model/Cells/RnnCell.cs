using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Model;

/// <summary>The plain RNN (d2l 6.4/6.5): H_t = act(X_t·W_xh + H_{t−1}·W_hh + b), act tanh or relu.</summary>
public sealed class RnnCell(ModelSpec spec) : RecurrentCell(spec)
{
    public override int Gates => 1;
    public override string TorchModule => "nn.RNN";

    public override CellLayer CreateLayer(IBackend be, LayerTensors p, int batch, int steps) => new Layer(be, p, Spec, batch, steps);

    sealed class Layer(IBackend be, LayerTensors p, ModelSpec spec, int batch, int steps) : CellLayer(be, p, spec, batch, steps)
    {
        readonly Activation _act = spec.Activation;

        public override PlainRecurrence Plain => new(_act, Batch, Hidden, Pre, Hs, P.Wh, P.Bx, P.Bh, DH, DPre, DH0, WantDH0);

        // The steps are PlainSteps' (pre += H_{t-1}·W_hh, H_t = act(pre + b); dH_t += dPre_{t+1}·W_hhᵀ, dPre_t =
        // dH_t ⊙ act′): one definition for the layer and for a backend that times them on scratch tensors.
        public override void ForwardStep(IBackend be, int t) => PlainSteps.Forward(be, Plain, t);

        public override void BackwardStep(IBackend be, int t) => PlainSteps.Backward(be, Plain, t, Steps);

        public override void EndBackward(IBackend be) => PlainSteps.End(be, Plain);
    }
}
