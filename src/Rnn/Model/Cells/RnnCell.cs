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

        public override void ForwardStep(IBackend be, int t)
        {
            var pre = Rows(Pre, t);
            be.Gemm(false, false, 1f, Rows(Hs, t), P.Wh.All, 1f, pre);       // pre += H_{t-1}·W_hh
            be.BiasActivationForward(_act, pre, P.Bx, P.Bh, Rows(Hs, t + 1)); // H_t = act(pre + b)
        }

        public override void BackwardStep(IBackend be, int t)
        {
            var dh = Rows(DH, t);
            if (t < Steps - 1) be.Gemm(false, true, 1f, Rows(DPre, t + 1), P.Wh.All, 1f, dh); // dH_t += dPre_{t+1}·W_hhᵀ
            be.ActivationBackward(_act, dh, Rows(Hs, t + 1), Rows(DPre, t));
        }

        public override void EndBackward(IBackend be)
        {
            if (WantDH0) be.Gemm(false, true, 1f, Rows(DPre, 0), P.Wh.All, 0f, DH0.All);
        }
    }
}
