using System.Diagnostics;
using System.Runtime.CompilerServices;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Backends;

/// <summary>
/// Wraps a backend and accumulates wall time per op (synchronising a GPU backend after each op, so the numbers are
/// per-op device time plus launch overhead). For <c>charrnn bench --profile</c>: where a training step spends its time.
/// </summary>
public sealed class ProfilingBackend(IBackend inner) : IBackend
{
    readonly Dictionary<string, (double Seconds, long Calls)> _times = new();

    public IReadOnlyDictionary<string, (double Seconds, long Calls)> Times => _times;
    public void ResetTimes() => _times.Clear();

    T Time<T>(Func<T> f, [CallerMemberName] string op = "")
    {
        var sw = Stopwatch.StartNew();
        var r = f();
        inner.Synchronize();
        var (s, c) = _times.GetValueOrDefault(op);
        _times[op] = (s + sw.Elapsed.TotalSeconds, c + 1);
        return r;
    }

    void Time(Action f, [CallerMemberName] string op = "") => Time(() => { f(); return 0; }, op);

    public string Name => inner.Name;
    public string Description => inner.Description + " [profiled]";
    public int OverlapBlock => inner.OverlapBlock;
    public InputMode DefaultInputMode => inner.DefaultInputMode;
    public Tensor Zeros(int rows, int cols) => inner.Zeros(rows, cols);
    public IndexBuffer Indices(int length) => inner.Indices(length);
    public void Upload(Tensor dst, ReadOnlySpan<float> src) => inner.Upload(dst, src);
    public void Download(Tensor src, Span<float> dst) => inner.Download(src, dst);
    public void Upload(IndexBuffer dst, ReadOnlySpan<int> src) => inner.Upload(dst, src);
    public void Download(IndexBuffer src, Span<int> dst) => inner.Download(src, dst);
    public void Zero(Mat m) => Time(() => inner.Zero(m));
    public void Copy(Mat src, Mat dst) => Time(() => inner.Copy(src, dst));
    public void OneHotScatter(IdxView tokens, Mat dst) => Time(() => inner.OneHotScatter(tokens, dst));
    public void GatherRows(IdxView tokens, Tensor table, Mat dst) => Time(() => inner.GatherRows(tokens, table, dst));
    public void ScatterAddRows(IdxView tokens, Mat src, Tensor table) => Time(() => inner.ScatterAddRows(tokens, src, table));

    public void Gemm(bool transA, bool transB, float alpha, Mat a, Mat b, float beta, Mat c)
    {
        int m = c.Rows, n = c.Cols, k = transA ? a.Rows : a.Cols;
        // Name GEMMs by shape class so the small recurrent ones stand apart from the big output-layer ones.
        string op = $"Gemm {(transA ? "T" : "N")}{(transB ? "T" : "N")} {m}x{n}x{k}";
        Time(() => inner.Gemm(transA, transB, alpha, a, b, beta, c), op);
    }

    public void BiasActivationForward(Activation act, Mat pre, Tensor bias, Tensor? bias2, Mat h) => Time(() => inner.BiasActivationForward(act, pre, bias, bias2, h));
    public void ActivationBackward(Activation act, Mat dh, Mat h, Mat dpre) => Time(() => inner.ActivationBackward(act, dh, h, dpre));
    public void LstmForward(Mat pre, Tensor bx, Tensor? bh, Mat cPrev, Mat gates, Mat c, Mat h) => Time(() => inner.LstmForward(pre, bx, bh, cPrev, gates, c, h));
    public void LstmBackward(Mat dh, Mat dc, Mat gates, Mat cPrev, Mat c, Mat dpre) => Time(() => inner.LstmBackward(dh, dc, gates, cPrev, c, dpre));
    public void GruForward(Mat xpre, Mat hproj, Tensor bx, Tensor? bh, Mat hPrev, Mat gates, Mat h) => Time(() => inner.GruForward(xpre, hproj, bx, bh, hPrev, gates, h));
    public void GruBackward(Mat dh, Mat gates, Mat hproj, Tensor? bh, Mat hPrev, Mat dxpre, Mat dhproj, Mat dhPrev) => Time(() => inner.GruBackward(dh, gates, hproj, bh, hPrev, dxpre, dhproj, dhPrev));
    public void GruResetGates(Mat xpre, Mat hproj, Tensor bx, Mat hPrev, Mat gates, Mat rh) => Time(() => inner.GruResetGates(xpre, hproj, bx, hPrev, gates, rh));
    public void GruCandidate(Mat xpre, Mat hproj, Tensor bx, Mat hPrev, Mat gates, Mat h) => Time(() => inner.GruCandidate(xpre, hproj, bx, hPrev, gates, h));
    public void GruCandidateBackward(Mat dh, Mat gates, Mat hPrev, Mat dxpre, Mat dhproj, Mat dhPrev) => Time(() => inner.GruCandidateBackward(dh, gates, hPrev, dxpre, dhproj, dhPrev));
    public void GruResetBackward(Mat drh, Mat gates, Mat hPrev, Mat dxpre, Mat dhproj, Mat dhPrev) => Time(() => inner.GruResetBackward(drh, gates, hPrev, dxpre, dhproj, dhPrev));
    public void SoftmaxCrossEntropy(Mat logits, Tensor bias, IdxView labels, Mat dlogits, float gradScale, Mat rowLoss) => Time(() => inner.SoftmaxCrossEntropy(logits, bias, labels, dlogits, gradScale, rowLoss));
    public void OutputLayerForward(Mat h, Tensor whq, Tensor bq, IdxView labels, Mat logits, Mat dlogits, float gradScale, Mat rowLoss) => Time(() => inner.OutputLayerForward(h, whq, bq, labels, logits, dlogits, gradScale, rowLoss));
    public void AccumulateLoss(Mat rowLoss) => Time(() => inner.AccumulateLoss(rowLoss));
    public void ColumnSum(Mat src, Mat dst) => Time(() => inner.ColumnSum(src, dst));

    /// <summary>Sequential, so each op's time is its own.</summary>
    public void Overlap(Action foreground, IReadOnlyList<Action> background)
    {
        foreground();
        foreach (var b in background) b();
    }
    public void ArgmaxRows(Mat logits, Tensor bias, IdxView dst) => Time(() => inner.ArgmaxRows(logits, bias, dst));
    public void ResetLoss() => inner.ResetLoss();
    public (double Sum, long Rows) ReadLoss() => inner.ReadLoss();
    public void ComputeClipScale(IReadOnlyList<Tensor> grads, float theta) => Time(() => inner.ComputeClipScale(grads, theta));
    public double ReadGradNorm() => inner.ReadGradNorm();
    public void SgdUpdate(Tensor p, Tensor g, float lr) => Time(() => inner.SgdUpdate(p, g, lr));
    public void AdamUpdate(Tensor p, Tensor g, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, int step) => Time(() => inner.AdamUpdate(p, g, m, v, lr, beta1, beta2, eps, step));
    public void Synchronize() => inner.Synchronize();
    public void Dispose() => inner.Dispose();
}
