using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using CharRnn.Cuda;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Backends.Cuda;

/// <summary>How one layer's recurrence runs: per step, the grid kernels (plain RNN) or the cluster kernels, and what
/// the run's header says about it (<see cref="Description"/>).</summary>
sealed record RecurrencePlan(string Id, PersistentRecurrence.Plan? Grid, ClusterShape? Cluster, string Description)
{
    public bool PerStep => Grid == null && Cluster == null;
}

/// <summary>
/// The recurrence planner (the first use of a layer shape): <c>--recurrence auto</c> times every eligible plan — per
/// step, grid-persistent (plain RNN), and each cluster shape that fits (plain RNN, LSTM, PyTorch's GRU) — on scratch
/// tensors of the layer's shapes with device events, runs the fastest, and caches the choice per card, driver, cell,
/// shape, precision and kernel sources (<see cref="PlanCache"/>); cuDNN's find step. <c>steps</c>, <c>persistent</c>
/// and <c>cluster</c> force a path (the per-step one, with the reason, where the forced one cannot run). Without timing
/// (<see cref="GpuOptions.TimePlans"/> false) auto keeps the untimed rule: for the plain RNN the grid kernels where they
/// fit and B·H² ≤ 2^26, else per step; the gated cells per step; it never picks the clusters unmeasured.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    const int TimedSteps = 16; // a timing runs min(T, 16) steps: enough to amortise the weights' load, cheap everywhere
    const int TimedRounds = 3;

    /// <summary>The plan for a layer (chosen, timed or read from the cache on first use of its shape).</summary>
    RecurrencePlan PlanOf(IRecurrence layer)
    {
        var (cell, b, h, bh) = Shape((object?)layer.Plain ?? layer.Gated);
        var key = (cell, b, h, layer.Steps, bh);
        lock (_plans)
            if (_plans.TryGetValue(key, out var known)) return known;
        var plan = Choose(layer);
        if (!_state.Recording) lock (_plans) _plans[key] = plan; // chosen while recording: untimed, so not kept
        return plan;
    }

    static RecurrencePlan Steps(string why) => new("steps", null, null, $"per-step ({why})");
    static RecurrencePlan GridPlan(PersistentRecurrence.Plan g) => new($"persistent {g.Blocks}x{g.Cols}", g, null, g.ToString());
    static RecurrencePlan ClusterPlan(ClusterShape c) => new($"cluster {c.Clusters}x{c.Size}", null, c, ClusterRecurrence.Describe(c));

    (List<ClusterShape> Shapes, string? Reason) ClusterShapes(object rec) => rec switch
    {
        PlainRecurrence r => _clusters.ShapesFor(r.Batch, r.Hidden, 1, RnnForwardClusterOp.Instance.Kernel, RnnBackwardClusterOp.Instance.Kernel),
        GatedRecurrence { Cell: GatedCell.Lstm } g => _clusters.ShapesFor(g.Batch, g.Hidden, 4, LstmForwardClusterOp.Instance.Kernel, LstmBackwardClusterOp.Instance.Kernel),
        GatedRecurrence g => _clusters.ShapesFor(g.Batch, g.Hidden, 3, GruForwardClusterOp.Instance.Kernel, GruBackwardClusterOp.Instance.Kernel),
        _ => ([], "no cluster kernels for this cell"),
    };

    RecurrencePlan Choose(IRecurrence layer)
    {
        if (_options.Recurrence == RecurrenceMode.Steps) return Steps("--recurrence steps");
        object? rec = (object?)layer.Plain ?? layer.Gated;
        if (rec == null) return Steps("the book's GRU, reset before the product, has no fused kernels");
        var plain = rec as PlainRecurrence;
        switch (_options.Recurrence)
        {
            case RecurrenceMode.Persistent:
                if (plain == null) return Steps("the grid kernels are the plain RNN's; --recurrence persistent");
                var forced = _persistent.PlanFor(plain.Batch, plain.Hidden, force: true);
                return forced.Runs ? GridPlan(forced) : Steps(forced.Reason + "; --recurrence persistent");
            case RecurrenceMode.Cluster:
            {
                var (shapes, why) = ClusterShapes(rec);
                if (shapes.Count == 0) return Steps(why + "; --recurrence cluster");
                if (!_options.TimePlans || shapes.Count == 1 || _state.Recording)
                    return ClusterPlan(shapes.FirstOrDefault(s => s.Size == 8, shapes[0]));
                return Timed(rec, layer.Steps, shapes.Select(ClusterPlan).ToList(), "cluster");
            }
            default:
            {
                var candidates = new List<RecurrencePlan> { new("steps", null, null, "per-step") };
                if (plain != null && _persistent.PlanFor(plain.Batch, plain.Hidden, force: true) is { Runs: true } grid) candidates.Add(GridPlan(grid));
                var (shapes, noCluster) = ClusterShapes(rec);
                candidates.AddRange(shapes.Select(ClusterPlan));
                // A resume runs the plan its checkpoint trained with, where it can: the same kernels, the same bits.
                string note = "";
                if (_options.ResumePlan is string resumed)
                {
                    if (candidates.FirstOrDefault(c => c.Id == resumed) is { } same)
                        return same with { Description = same.Description + "; as the resumed checkpoint ran" };
                    note = $"; the resumed checkpoint's plan ({resumed}) cannot run here";
                }
                RecurrencePlan untimed;
                if (plain != null)
                {
                    var rule = _persistent.PlanFor(plain.Batch, plain.Hidden);
                    untimed = rule.Runs ? GridPlan(rule) : Steps(rule.Reason!);
                }
                else untimed = Steps("the gated cells' cluster kernels run where timed faster, or with --recurrence cluster");
                if (!_options.TimePlans) return untimed with { Description = untimed.Description + note };
                if (candidates.Count == 1) return Steps($"{noCluster}: the only plan that fits, so nothing to time{note}");
                if (_state.Recording) return untimed with { Description = untimed.Description + "; not timed: first used while recording" + note };
                var chosen = Timed(rec, layer.Steps, candidates, "auto");
                return chosen with { Description = chosen.Description + note };
            }
        }
    }

    /// <summary>The fastest of <paramref name="candidates"/>: from the cache when it holds this key and its choice is
    /// still a candidate, else timed now (and stored).</summary>
    RecurrencePlan Timed(object rec, int steps, List<RecurrencePlan> candidates, string mode)
    {
        string key = CacheKey(rec, steps, mode);
        if (PlanCache.Find(key) is { } hit && candidates.FirstOrDefault(c => c.Id == hit.Plan) is { } cached)
            return cached with { Description = $"{cached.Description}; {Timings(hit.Timings)}, cached" };
        var timings = new List<(string Plan, double Micros)>();
        var failed = new List<string>();
        var ran = new List<RecurrencePlan>();
        foreach (var c in candidates)
        {
            // A plan the card refuses (a launch error that leaves the context usable: a cluster shape or resources the
            // occupancy query allowed but the launch did not) drops out with its reason, so one refusal cannot end a
            // run; a sticky fault (an illegal address) still ends it, as it must.
            try
            {
                timings.Add((c.Id, TimePlan(c, rec, steps)));
                ran.Add(c);
            }
            catch (CudaException e) when (c != candidates[0] && ContextStillUsable())
            {
                failed.Add($"{c.Id} refused: {e.DriverStatus}");
            }
        }
        var best = ran[timings.Select((t, i) => (t.Micros, i)).Min().i];
        if (failed.Count == 0)
            PlanCache.Store(key, new PlanCache.Entry(best.Id, timings, DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture)));
        return best with { Description = $"{best.Description}; {Timings(timings)}{string.Concat(failed.Select(f => "; " + f))}" };
    }

    bool ContextStillUsable()
    {
        try
        {
            _ctx.Synchronize();
            return true;
        }
        catch (CudaException)
        {
            return false;
        }
    }

    static string Timings(IEnumerable<(string Plan, double Micros)> t) =>
        "timed " + string.Join(", ", t.Select(x => $"{x.Plan} {x.Micros.ToString("0.0", CultureInfo.InvariantCulture)} µs")) + " a step";

    /// <summary>What a plan is chosen for: the cell ("rnn tanh", "lstm", "gru"; "other" for one without fused kernels),
    /// B, H and whether it has the second bias.</summary>
    static (string Cell, int B, int H, bool Bh) Shape(object? rec) => rec switch
    {
        PlainRecurrence r => ("rnn " + r.Activation.ToString().ToLowerInvariant(), r.Batch, r.Hidden, r.Bh != null),
        GatedRecurrence g => (g.Cell.ToString().ToLowerInvariant(), g.Batch, g.Hidden, g.Bh != null),
        _ => ("other", 0, 0, false),
    };

    /// <summary>What the cache keys a choice by: the card, its driver, the layer (cell, activation, biases, H, B, T),
    /// the GEMM precision, the mode and the recurrence kernels' sources (a changed kernel is timed again).</summary>
    string CacheKey(object rec, int steps, string mode)
    {
        var (cell, b, h, bh) = Shape(rec);
        return $"{_ctx.DeviceName} {_ctx.Arch} driver {CudaContext.DriverVersion()} | {cell}{(bh ? " 2 biases" : "")} H {h} B {b} T {steps} | {_options.Precision.ToString().ToLowerInvariant()} | {mode} | kernels {KernelsHash}";
    }

    static readonly string KernelsHash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(
        string.Concat(new[] { "rnn_persistent.cu", "rnn_cluster.cu", "gated_cluster.cu", "gates.cu" }.Select(f => KernelSources.All[f]))
        + KernelSources.Headers["common.cuh"] + KernelSources.Headers["cluster.cuh"])))[..12].ToLowerInvariant();

    /// <summary>Microseconds per step (forward + backward) of <paramref name="plan"/> on scratch tensors shaped as the
    /// layer's (its weights, read only): one warm-up, then the median of three rounds.</summary>
    double TimePlan(RecurrencePlan plan, object rec, int steps)
    {
        int t = Math.Min(steps, TimedSteps);
        var scratch = new List<Tensor>();
        Tensor Z(int rows, int cols)
        {
            var z = Zeros(rows, cols);
            scratch.Add(z);
            return z;
        }
        try
        {
            object s = rec switch
            {
                PlainRecurrence r => r with
                {
                    Pre = Z(t * r.Batch, r.Hidden), Hs = Z((t + 1) * r.Batch, r.Hidden), DH = Z(t * r.Batch, r.Hidden),
                    DPre = Z(t * r.Batch, r.Hidden), DH0 = Z(r.Batch, r.Hidden), WantDH0 = true,
                },
                GatedRecurrence g => g with
                {
                    Pre = Z(t * g.Batch, g.G * g.Hidden), Hs = Z((t + 1) * g.Batch, g.Hidden), Gates = Z(t * g.Batch, g.G * g.Hidden),
                    Cs = g.Cs == null ? null : Z((t + 1) * g.Batch, g.Hidden), HProj = g.HProj == null ? null : Z(t * g.Batch, g.G * g.Hidden),
                    DH = Z(t * g.Batch, g.Hidden), DPre = Z(t * g.Batch, g.G * g.Hidden),
                    DHProj = g.DHProj == null ? null : Z(t * g.Batch, g.G * g.Hidden), DC = g.DC == null ? null : Z(g.Batch, g.Hidden),
                    DH0 = Z(g.Batch, g.Hidden), DC0 = g.DC0 == null ? null : Z(g.Batch, g.Hidden), WantDH0 = true,
                },
                _ => throw new ArgumentException("no fused recurrence", nameof(rec)),
            };
            void Run()
            {
                RunForward(plan, s, t);
                RunBackward(plan, s, t);
            }
            Run();
            var rounds = Enumerable.Range(0, TimedRounds).Select(_ => DeviceSeconds(Run, 1) ?? 0).OrderBy(x => x).ToArray();
            return rounds[rounds.Length / 2] * 1e6 / t;
        }
        finally
        {
            foreach (var z in scratch) z.Dispose();
        }
    }

    void RunForward(RecurrencePlan plan, object rec, int steps)
    {
        switch (rec)
        {
            case PlainRecurrence r when plan.Grid is { } g: Launch(RnnForwardPersistentOp.Instance, _persistent.Forward(r, steps, g)); break;
            case PlainRecurrence r when plan.Cluster is { } c: Launch(RnnForwardClusterOp.Instance, new RnnForwardClusterOp.Args(c, r, steps)); break;
            case PlainRecurrence r: for (int t = 0; t < steps; t++) PlainSteps.Forward(this, r, t); break;
            case GatedRecurrence { Cell: GatedCell.Lstm } l when plan.Cluster is { } c: Launch(LstmForwardClusterOp.Instance, new LstmForwardClusterOp.Args(c, l, steps)); break;
            case GatedRecurrence g when plan.Cluster is { } c: Launch(GruForwardClusterOp.Instance, new GruForwardClusterOp.Args(c, g, steps)); break;
            case GatedRecurrence g: for (int t = 0; t < steps; t++) GatedSteps.Forward(this, g, t); break;
        }
    }

    void RunBackward(RecurrencePlan plan, object rec, int steps)
    {
        switch (rec)
        {
            case PlainRecurrence r when plan.Grid is { } g: Launch(RnnBackwardPersistentOp.Instance, _persistent.Backward(r, steps, g)); break;
            case PlainRecurrence r when plan.Cluster is { } c: Launch(RnnBackwardClusterOp.Instance, new RnnBackwardClusterOp.Args(c, r, steps)); break;
            case PlainRecurrence r:
                for (int t = steps - 1; t >= 0; t--) PlainSteps.Backward(this, r, t, steps);
                PlainSteps.End(this, r);
                break;
            case GatedRecurrence { Cell: GatedCell.Lstm } l when plan.Cluster is { } c: Launch(LstmBackwardClusterOp.Instance, new LstmBackwardClusterOp.Args(c, l, steps)); break;
            case GatedRecurrence g when plan.Cluster is { } c: Launch(GruBackwardClusterOp.Instance, new GruBackwardClusterOp.Args(c, g, steps)); break;
            case GatedRecurrence g:
                GatedSteps.Begin(this, g);
                for (int t = steps - 1; t >= 0; t--) GatedSteps.Backward(this, g, t, steps);
                GatedSteps.End(this, g);
                break;
        }
    }
}
