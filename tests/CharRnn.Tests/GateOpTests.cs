using CharRnn.Rnn;
using CharRnn.Rnn.Backends;

namespace CharRnn.Tests;

/// <summary>
/// The eight fused gate ops of the GRU and LSTM cells, each on every backend against plain double code written from
/// its documented equations (IBackend, kernels/gates.cu), on fresh random inputs. Outputs are poisoned (NaN) first,
/// so an element the op skips fails; columns an op must not write stay NaN and are checked to; accumulated outputs
/// (dh_prev) start from random values. H = 21: two passes of the CPU's 8-lane loops — the second at offset 8, which
/// H = 13's single pass never exercised (#26: a pointer offset flipped from + j to − j survived) — and a 5-wide scalar
/// tail. Tolerance 1e-5 abs + rel.
/// </summary>
[TestFixtureSource(typeof(TestBackends), nameof(TestBackends.All))]
public class GateOpTests(string backendName) : BackendFixture(backendName)
{
    const double Tol = 1e-5;
    const int N = 5, H = 21;
    float[] Unit(int n) => Enumerable.Range(0, n).Select(_ => (float)(0.05 + 0.9 * _rng.NextDouble())).ToArray(); // gate values in (0, 1)
    Tensor Up(int cols, float[] data) => _be.FromArray(data.Length / cols, cols, data);
    Tensor Poisoned(int cols) => Up(cols, Enumerable.Repeat(float.NaN, N * cols).ToArray());
    static double Sig(double x) => 1 / (1 + Math.Exp(-x));

    /// <summary>Element (row r, gate k, unit j) of an N × G·H block.</summary>
    static int At(int r, int k, int j, int g) => r * g * H + k * H + j;

    /// <summary>Checks the columns of gate blocks <paramref name="blocks"/> against <paramref name="want"/> and the other blocks stay NaN.</summary>
    void CheckBlocks(double[] want, Tensor got, int gates, int[] blocks, string what)
    {
        var g = _be.ToArray(got);
        for (int r = 0; r < N; r++)
            for (int k = 0; k < gates; k++)
                for (int j = 0; j < H; j++)
                {
                    int i = At(r, k, j, gates);
                    if (blocks.Contains(k)) Check.Close(want[i], g[i], Tol, Tol, $"{what}[{r}, gate {k}, {j}]");
                    else Assert.That(float.IsNaN(g[i]), $"{what}[{r}, gate {k}, {j}] must not be written");
                }
    }

    [Test]
    public void LstmForward([Values] bool twoBiases)
    {
        var pre = Rand(N * 4 * H); var bx = Rand(4 * H); var bh = Rand(4 * H); var cPrev = Rand(N * H);
        using var tp = Up(4 * H, pre); using var tbx = Up(4 * H, bx); using var tbh = Up(4 * H, bh); using var tc0 = Up(H, cPrev);
        using var gates = Poisoned(4 * H); using var c = Poisoned(H); using var h = Poisoned(H);
        _be.LstmForward(tp.All, tbx, twoBiases ? tbh : null, tc0.All, gates.All, c.All, h.All);
        var wg = new double[N * 4 * H]; var wc = new double[N * H]; var wh = new double[N * H];
        for (int r = 0; r < N; r++)
            for (int j = 0; j < H; j++)
            {
                double B(int k) => bx[k * H + j] + (twoBiases ? bh[k * H + j] : 0);
                double i = Sig(pre[At(r, 0, j, 4)] + B(0)), f = Sig(pre[At(r, 1, j, 4)] + B(1));
                double gg = Math.Tanh(pre[At(r, 2, j, 4)] + B(2)), o = Sig(pre[At(r, 3, j, 4)] + B(3));
                (wg[At(r, 0, j, 4)], wg[At(r, 1, j, 4)], wg[At(r, 2, j, 4)], wg[At(r, 3, j, 4)]) = (i, f, gg, o);
                wc[r * H + j] = f * cPrev[r * H + j] + i * gg;
                wh[r * H + j] = o * Math.Tanh(wc[r * H + j]);
            }
        CheckBlocks(wg, gates, 4, [0, 1, 2, 3], "gates");
        Check.Close(wc, _be.ToArray(c), Tol, Tol, "c");
        Check.Close(wh, _be.ToArray(h), Tol, Tol, "h");
    }

    [Test]
    public void LstmBackward()
    {
        var dh = Rand(N * H); var dc = Rand(N * H); var g = Unit(N * 4 * H); var cPrev = Rand(N * H); var c = Rand(N * H);
        for (int r = 0; r < N; r++) for (int j = 0; j < H; j++) g[At(r, 2, j, 4)] = 2 * g[At(r, 2, j, 4)] - 1; // g = tanh(·) in (−1, 1)
        using var tdh = Up(H, dh); using var tdc = Up(H, dc); using var tg = Up(4 * H, g); using var tc0 = Up(H, cPrev); using var tcell = Up(H, c);
        using var dpre = Poisoned(4 * H);
        _be.LstmBackward(tdh.All, tdc.All, tg.All, tc0.All, tcell.All, dpre.All);
        var wd = new double[N * 4 * H]; var wdc = new double[N * H];
        for (int r = 0; r < N; r++)
            for (int j = 0; j < H; j++)
            {
                int e = r * H + j;
                double i = g[At(r, 0, j, 4)], f = g[At(r, 1, j, 4)], gg = g[At(r, 2, j, 4)], o = g[At(r, 3, j, 4)];
                double tc = Math.Tanh(c[e]), dct = dc[e] + dh[e] * o * (1 - tc * tc);
                wd[At(r, 0, j, 4)] = dct * gg * i * (1 - i);
                wd[At(r, 1, j, 4)] = dct * cPrev[e] * f * (1 - f);
                wd[At(r, 2, j, 4)] = dct * i * (1 - gg * gg);
                wd[At(r, 3, j, 4)] = dh[e] * tc * o * (1 - o);
                wdc[e] = dct * f;
            }
        CheckBlocks(wd, dpre, 4, [0, 1, 2, 3], "dpre");
        Check.Close(wdc, _be.ToArray(tdc), Tol, Tol, "dc → dc_{t−1}");
    }

    [Test]
    public void GruForward([Values] bool twoBiases)
    {
        var x = Rand(N * 3 * H); var u = Rand(N * 3 * H); var bx = Rand(3 * H); var bh = Rand(3 * H); var hp = Rand(N * H);
        using var tx = Up(3 * H, x); using var tu = Up(3 * H, u); using var tbx = Up(3 * H, bx); using var tbh = Up(3 * H, bh); using var thp = Up(H, hp);
        using var gates = Poisoned(3 * H); using var h = Poisoned(H);
        _be.GruForward(tx.All, tu.All, tbx, twoBiases ? tbh : null, thp.All, gates.All, h.All);
        var wg = new double[N * 3 * H]; var wh = new double[N * H];
        for (int r = 0; r < N; r++)
            for (int j = 0; j < H; j++)
            {
                double Bh(int k) => twoBiases ? bh[k * H + j] : 0;
                double rg = Sig(x[At(r, 0, j, 3)] + bx[j] + u[At(r, 0, j, 3)] + Bh(0));
                double z = Sig(x[At(r, 1, j, 3)] + bx[H + j] + u[At(r, 1, j, 3)] + Bh(1));
                double n = Math.Tanh(x[At(r, 2, j, 3)] + bx[2 * H + j] + rg * (u[At(r, 2, j, 3)] + Bh(2)));
                (wg[At(r, 0, j, 3)], wg[At(r, 1, j, 3)], wg[At(r, 2, j, 3)]) = (rg, z, n);
                wh[r * H + j] = (1 - z) * n + z * hp[r * H + j];
            }
        CheckBlocks(wg, gates, 3, [0, 1, 2], "gates");
        Check.Close(wh, _be.ToArray(h), Tol, Tol, "h");
    }

    [Test]
    public void GruBackward([Values] bool twoBiases)
    {
        var dh = Rand(N * H); var g = Unit(N * 3 * H); var u = Rand(N * 3 * H); var bh = Rand(3 * H); var hp = Rand(N * H);
        var dPrev0 = Rand(N * H);
        using var tdh = Up(H, dh); using var tg = Up(3 * H, g); using var tu = Up(3 * H, u); using var tbh = Up(3 * H, bh); using var thp = Up(H, hp);
        using var dx = Poisoned(3 * H); using var du = Poisoned(3 * H); using var dPrev = Up(H, dPrev0);
        _be.GruBackward(tdh.All, tg.All, tu.All, twoBiases ? tbh : null, thp.All, dx.All, du.All, dPrev.All);
        var wx = new double[N * 3 * H]; var wu = new double[N * 3 * H]; var wp = new double[N * H];
        for (int r = 0; r < N; r++)
            for (int j = 0; j < H; j++)
            {
                int e = r * H + j;
                double rg = g[At(r, 0, j, 3)], z = g[At(r, 1, j, 3)], n = g[At(r, 2, j, 3)], d = dh[e];
                double hn = u[At(r, 2, j, 3)] + (twoBiases ? bh[2 * H + j] : 0);
                double dn = d * (1 - z) * (1 - n * n), dz = d * (hp[e] - n) * z * (1 - z), dr = dn * hn * rg * (1 - rg);
                (wx[At(r, 0, j, 3)], wx[At(r, 1, j, 3)], wx[At(r, 2, j, 3)]) = (dr, dz, dn);
                (wu[At(r, 0, j, 3)], wu[At(r, 1, j, 3)], wu[At(r, 2, j, 3)]) = (dr, dz, dn * rg);
                wp[e] = dPrev0[e] + d * z;
            }
        CheckBlocks(wx, dx, 3, [0, 1, 2], "dxpre");
        CheckBlocks(wu, du, 3, [0, 1, 2], "dhproj");
        Check.Close(wp, _be.ToArray(dPrev), Tol, Tol, "dh_prev");
    }

    [Test]
    public void BookGruResetGates()
    {
        var x = Rand(N * 3 * H); var u = Rand(N * 3 * H); var bx = Rand(3 * H); var hp = Rand(N * H);
        using var tx = Up(3 * H, x); using var tu = Up(3 * H, u); using var tbx = Up(3 * H, bx); using var thp = Up(H, hp);
        using var gates = Poisoned(3 * H); using var rh = Poisoned(H);
        _be.GruResetGates(tx.All, tu.All, tbx, thp.All, gates.All, rh.All);
        var wg = new double[N * 3 * H]; var wrh = new double[N * H];
        for (int r = 0; r < N; r++)
            for (int j = 0; j < H; j++)
            {
                double rg = Sig(x[At(r, 0, j, 3)] + bx[j] + u[At(r, 0, j, 3)]);
                wg[At(r, 0, j, 3)] = rg;
                wg[At(r, 1, j, 3)] = Sig(x[At(r, 1, j, 3)] + bx[H + j] + u[At(r, 1, j, 3)]);
                wrh[r * H + j] = rg * hp[r * H + j];
            }
        CheckBlocks(wg, gates, 3, [0, 1], "gates (r, z; n not yet)");
        Check.Close(wrh, _be.ToArray(rh), Tol, Tol, "r ⊙ h_prev");
    }

    [Test]
    public void BookGruCandidate()
    {
        var x = Rand(N * 3 * H); var u = Rand(N * 3 * H); var bx = Rand(3 * H); var hp = Rand(N * H); var z = Unit(N * H);
        var g0 = Enumerable.Repeat(float.NaN, N * 3 * H).ToArray();
        for (int r = 0; r < N; r++) for (int j = 0; j < H; j++) g0[At(r, 1, j, 3)] = z[r * H + j]; // z from gru_reset_gates
        using var tx = Up(3 * H, x); using var tu = Up(3 * H, u); using var tbx = Up(3 * H, bx); using var thp = Up(H, hp);
        using var gates = Up(3 * H, g0); using var h = Poisoned(H);
        _be.GruCandidate(tx.All, tu.All, tbx, thp.All, gates.All, h.All);
        var wg = new double[N * 3 * H]; var wh = new double[N * H];
        for (int r = 0; r < N; r++)
            for (int j = 0; j < H; j++)
            {
                double n = Math.Tanh(x[At(r, 2, j, 3)] + bx[2 * H + j] + u[At(r, 2, j, 3)]), zz = z[r * H + j];
                wg[At(r, 1, j, 3)] = zz;
                wg[At(r, 2, j, 3)] = n;
                wh[r * H + j] = zz * hp[r * H + j] + (1 - zz) * n;
            }
        CheckBlocks(wg, gates, 3, [1, 2], "gates (z kept, n written)");
        Check.Close(wh, _be.ToArray(h), Tol, Tol, "h");
    }

    [Test]
    public void BookGruCandidateBackward()
    {
        var dh = Rand(N * H); var g = Unit(N * 3 * H); var hp = Rand(N * H); var dPrev0 = Rand(N * H);
        using var tdh = Up(H, dh); using var tg = Up(3 * H, g); using var thp = Up(H, hp);
        using var dx = Poisoned(3 * H); using var du = Poisoned(3 * H); using var dPrev = Up(H, dPrev0);
        _be.GruCandidateBackward(tdh.All, tg.All, thp.All, dx.All, du.All, dPrev.All);
        var w = new double[N * 3 * H]; var wp = new double[N * H];
        for (int r = 0; r < N; r++)
            for (int j = 0; j < H; j++)
            {
                int e = r * H + j;
                double z = g[At(r, 1, j, 3)], n = g[At(r, 2, j, 3)];
                w[At(r, 1, j, 3)] = dh[e] * (hp[e] - n) * z * (1 - z);
                w[At(r, 2, j, 3)] = dh[e] * (1 - z) * (1 - n * n);
                wp[e] = dPrev0[e] + dh[e] * z;
            }
        CheckBlocks(w, dx, 3, [1, 2], "dxpre (z, n)");
        CheckBlocks(w, du, 3, [1, 2], "dhproj (z, n)");
        Check.Close(wp, _be.ToArray(dPrev), Tol, Tol, "dh_prev");
    }

    [Test]
    public void BookGruResetBackward()
    {
        var drh = Rand(N * H); var g = Unit(N * 3 * H); var hp = Rand(N * H); var dPrev0 = Rand(N * H);
        using var tdrh = Up(H, drh); using var tg = Up(3 * H, g); using var thp = Up(H, hp);
        using var dx = Poisoned(3 * H); using var du = Poisoned(3 * H); using var dPrev = Up(H, dPrev0);
        _be.GruResetBackward(tdrh.All, tg.All, thp.All, dx.All, du.All, dPrev.All);
        var w = new double[N * 3 * H]; var wp = new double[N * H];
        for (int r = 0; r < N; r++)
            for (int j = 0; j < H; j++)
            {
                int e = r * H + j;
                double rg = g[At(r, 0, j, 3)];
                w[At(r, 0, j, 3)] = drh[e] * hp[e] * rg * (1 - rg);
                wp[e] = dPrev0[e] + drh[e] * rg;
            }
        CheckBlocks(w, dx, 3, [0], "dxpre (r)");
        CheckBlocks(w, du, 3, [0], "dhproj (r)");
        Check.Close(wp, _be.ToArray(dPrev), Tol, Tol, "dh_prev");
    }
}
