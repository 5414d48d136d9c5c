using System.Reflection;
using CharRnn.Rnn.Backends;

namespace CharRnn.Tests;

/// <summary>
/// The op harness (#22, as ggml's test-backend-ops): every declared op every backend runs
/// (<see cref="HostedOp{TArgs}"/>, <c>src/Rnn/Backends/Ops</c>) × each of its cases × every backend, against its plain
/// double reference. Outputs start as NaN, so an element the op skips stays NaN and fails, and one it must not write
/// (a gate block another op owns) must still be NaN; updated tensors start random; inputs must come back unchanged,
/// bit for bit. Inputs come from the test's seed (printed when it fails; <see cref="TestSeed"/>). A new declaration is
/// picked up by itself: nothing here names an op.
/// </summary>
[TestFixtureSource(typeof(TestBackends), nameof(TestBackends.All))]
public class OpHarnessTests(string backendName) : BackendFixture(backendName)
{
    /// <summary>Every hosted declaration (found by reflection, as KernelDeclarationTests finds all of them).</summary>
    public static IReadOnlyList<IHostedOp> HostedOps() =>
        KernelDeclarationTests.Declarations().OfType<IHostedOp>().ToList();

    public static IEnumerable<TestCaseData> Cases() =>
        HostedOps().SelectMany(op => op.Cases.Select(c => new TestCaseData(op.Kernel, c).SetArgDisplayNames(op.Kernel, c.ToString())));

    [Test]
    public void EveryHostedOpHasCasesAndTheHarnessRunsThem() =>
        Assert.That(HostedOps().Select(o => (o.Kernel, o.Cases.Count)).ToList(), Has.Count.GreaterThanOrEqualTo(14).And.All.Matches<(string, int)>(x => x.Item2 > 0));

    [TestCaseSource(nameof(Cases))]
    public void MatchesTheDoubleReference(string kernel, OpCase c)
    {
        var op = HostedOps().Single(o => o.Kernel == kernel);
        var problems = Run(_be, op, c, _rng);
        Assert.That(problems, Is.Empty, $"{kernel} {c} on {_be.Name}");
    }

    /// <summary>Runs one case; returns what differs from the reference (at most a few lines per tensor).</summary>
    public static List<string> Run(IBackend be, IHostedOp op, OpCase c, CharRnn.Rnn.Rng rng)
    {
        using var operands = new Operands(be, rng);
        var expected = new DoubleTensors(t => operands.Initial[t], b => operands.InitialInts[b]);
        op.RunCase(be, operands, c, expected);
        var problems = new List<string>();
        foreach (var (t, role) in operands.Made)
        {
            var got = be.ToArray(t);
            if (role == Role.Input)
            {
                var before = operands.Initial[t];
                int changed = Enumerable.Range(0, got.Length).Count(i => BitConverter.SingleToInt32Bits(got[i]) != BitConverter.SingleToInt32Bits(before[i]));
                if (changed > 0) problems.Add($"an input ({t.Rows}×{t.Cols}) changed in {changed} elements");
                continue;
            }
            var want = expected.Expected(t);
            int shown = 0;
            for (int i = 0; i < got.Length && shown < 4; i++)
            {
                string where = $"{role} {t.Rows}×{t.Cols} [{i / t.Cols}, {i % t.Cols}]";
                if (double.IsNaN(want[i]))
                {
                    if (!float.IsNaN(got[i])) { problems.Add($"{where} = {got[i]:R}: must not be written"); shown++; }
                }
                else if (!(Math.Abs(got[i] - want[i]) <= op.Tolerance * (1 + Math.Abs(want[i]))))
                {
                    problems.Add($"{where} = {got[i]:R}, expected {want[i]:R}");
                    shown++;
                }
            }
        }
        return problems;
    }

    public enum Role { Input, Output, Updated }

    /// <summary>The operands of one case, made on the backend under test; what each one held before the op.</summary>
    sealed class Operands(IBackend be, CharRnn.Rnn.Rng rng) : OpOperands, IDisposable
    {
        public readonly Dictionary<Tensor, float[]> Initial = new(ReferenceEqualityComparer.Instance);
        public readonly Dictionary<IndexBuffer, int[]> InitialInts = new(ReferenceEqualityComparer.Instance);
        public readonly List<(Tensor, Role)> Made = [];
        readonly List<IDisposable> _owned = [];

        Mat Make(int rows, int cols, Role role, Func<float> value)
        {
            var data = new float[rows * cols];
            for (int i = 0; i < data.Length; i++) data[i] = value();
            var t = be.FromArray(rows, cols, data);
            _owned.Add(t);
            Initial[t] = data;
            Made.Add((t, role));
            return t.All;
        }

        public override Mat Input(int rows, int cols) => Make(rows, cols, Role.Input, () => (float)rng.NextNormal());
        public override Mat Uniform(int rows, int cols, double lo, double hi) => Make(rows, cols, Role.Input, () => (float)(lo + (hi - lo) * rng.NextDouble()));
        public override Mat Output(int rows, int cols) => Make(rows, cols, Role.Output, () => float.NaN);
        public override Mat InOut(int rows, int cols) => Make(rows, cols, Role.Updated, () => (float)rng.NextNormal());

        IdxView Indices(int[] values)
        {
            var b = be.FromArray(values);
            _owned.Add(b);
            InitialInts[b] = values;
            return b.All;
        }

        public override IdxView Tokens(int n, int vocab) => Indices(Enumerable.Range(0, n).Select(_ => rng.NextInt(vocab)).ToArray());
        public override IdxView Ints(params int[] values) => Indices(values.ToArray());

        public void Dispose()
        {
            foreach (var o in _owned) o.Dispose();
        }
    }
}

/// <summary>The harness catches what it claims to: a twin that is wrong by a factor, skips an element, writes where it
/// must not, or changes an input fails it; the right twin passes (on the CPU, where a twin can be made wrong here).</summary>
public class OpHarnessSelfTests
{
    /// <summary>y = 3x; variant 0 right, 1 off by a factor, 2 skips the last element, 3 writes its input too, 4 writes the
    /// column the reference leaves alone.</summary>
    sealed class TripleOp : HostedOp<TripleOp.Args>
    {
        public static readonly TripleOp Instance = new();
        public readonly record struct Args(Mat X, Mat Y, int Variant) : IKernelArgs
        {
            public void Write(KernelArgWriter w) { w.Ptr(X); w.Ptr(Y); }
        }
        public override string Kernel => "not_a_kernel";
        public override Grid GridFor(in Args a) => Grid.Single;

        public override void Host(in Args a)
        {
            var x = HostView.All(a.X); var y = HostView.All(a.Y);
            int n = a.Variant == 2 ? x.Length - 1 : x.Length;
            for (int i = 0; i < n; i++)
                if (i % a.Y.Cols != 0 || a.Variant == 4) y[i] = (a.Variant == 1 ? 3.001f : 3f) * x[i];
            if (a.Variant == 3) x[0] += 1;
        }

        public override void Reference(in Args a, DoubleTensors d)
        {
            var x = d[a.X]; var y = d.Out(a.Y);
            for (int r = 0; r < a.X.Rows; r++)
                for (int c = 1; c < a.X.Cols; c++) y[r, c] = 3 * x[r, c]; // column 0 is not this op's
        }

        public override IReadOnlyList<OpCase> Cases => [.. Enumerable.Range(0, 5).Select(v => new OpCase(3, 4, v))];
        public override Args Make(OpOperands o, OpCase c) => new(o.Input(c.Rows, c.Cols), o.Output(c.Rows, c.Cols), c.Variant);
    }

    [Test]
    public void AWrongTwinFailsTheHarnessAndTheRightOnePasses()
    {
        using var be = new CharRnn.Rnn.Backends.Cpu.CpuBackend(CharRnn.Rnn.Backends.Cpu.CpuGemm.Engine.Managed);
        var found = TripleOp.Instance.Cases.Select(c => OpHarnessTests.Run(be, TripleOp.Instance, c, new CharRnn.Rnn.Rng(7))).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(found[0], Is.Empty, "the right twin");
            Assert.That(found[1], Has.Some.Contains("expected"), "off by a factor of 1.0003");
            Assert.That(found[2], Has.Some.Contains("expected NaN").Or.Some.Contains("= NaN"), "the last element skipped");
            Assert.That(found[3], Has.Some.Contains("an input"), "an input changed");
            Assert.That(found[4], Has.Some.Contains("must not be written"), "a column it does not own written");
        });
    }

    /// <summary>An op with no CPU twin of its own: the CPU runs its double reference, rounded to float, into the block it
    /// writes — here the middle rows of a bigger tensor, whose other rows stay as they were.</summary>
    sealed class NoTwinOp : HostedOp<NoTwinOp.Args>
    {
        public static readonly NoTwinOp Instance = new();
        public readonly record struct Args(Mat X, Mat Y) : IKernelArgs
        {
            public void Write(KernelArgWriter w) { w.Ptr(X); w.Ptr(Y); }
        }
        public override string Kernel => "not_a_kernel";
        public override Grid GridFor(in Args a) => Grid.Single;

        public override void Reference(in Args a, DoubleTensors d)
        {
            var x = d[a.X]; var y = d.Out(a.Y);
            for (int r = 0; r < a.X.Rows; r++)
                for (int c = 0; c < a.X.Cols; c++) y[r, c] = Math.Exp(x[r, c]) / 3;
        }

        public override IReadOnlyList<OpCase> Cases => [new(2, 3)];
        public override Args Make(OpOperands o, OpCase c) => new(o.Input(c.Rows, c.Cols), o.Output(c.Rows, c.Cols));
    }

    [Test]
    public void AnOpWithoutATwinRunsItsReferenceOnTheCpu()
    {
        using var be = new CharRnn.Rnn.Backends.Cpu.CpuBackend(CharRnn.Rnn.Backends.Cpu.CpuGemm.Engine.Managed);
        float[] x = [0.5f, -1, 2, 0, 1, -0.25f];
        using var tx = be.FromArray(2, 3, x);
        using var ty = be.FromArray(4, 3, Enumerable.Repeat(float.NaN, 12).ToArray());
        be.Run(NoTwinOp.Instance, new(tx.All, ty.RowRange(1, 2)));
        var y = be.ToArray(ty);
        Assert.Multiple(() =>
        {
            Assert.That(y[..3].Concat(y[9..]), Is.All.NaN, "rows outside the block written");
            Assert.That(y[3..9], Is.EqualTo(x.Select(v => (float)(Math.Exp(v) / 3)).ToArray()), "the reference, rounded to float");
            Assert.That(be.ToArray(tx), Is.EqualTo(x), "the input untouched");
        });
        Assert.That(OpHarnessTests.Run(be, NoTwinOp.Instance, new OpCase(2, 3), new CharRnn.Rnn.Rng(3)), Is.Empty, "through the harness too");
    }
}
