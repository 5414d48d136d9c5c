using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using CharRnn.Cuda;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Backends.Cuda;

/// <summary>How one plain RNN layer's recurrence runs: per step, the grid kernels or the cluster kernels, and what
/// the run's header says about it (<see cref="Description"/>).</summary>
sealed record RecurrencePlan(string Id, PersistentRecurrence.Plan? Grid, ClusterShape? Cluster, string Description)
{
    public bool PerStep => Grid == null && Cluster == null;
}

/// <summary>
/// The recurrence planner (the first use of a layer shape): <c>--recurrence auto</c> times every eligible plan — per
/// step, grid-persistent, and each cluster shape that fits — on scratch tensors of the layer's shapes with device
/// events, runs the fastest, and caches the choice per card, driver, shape, precision and kernel sources
/// (<see cref="PlanCache"/>); cuDNN's find step. <c>steps</c>, <c>persistent</c> and <c>cluster</c> force a path (the
/// per-step one, with the reason, where the forced one cannot run). Without timing
/// (<see cref="GpuOptions.TimePlans"/> false) auto keeps the untimed rule: the grid kernels where they fit and
/// B·H² ≤ 2^26, else per step; it never picks the clusters unmeasured.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    const int TimedSteps = 16; // a timing runs min(T, 16) steps: enough to amortise the weights' load, cheap everywhere
    const int TimedRounds = 3;

    /// <summary>The plan for a plain layer (chosen, timed or read from the cache on first use of its shape).</summary>
    RecurrencePlan PlanOf(PlainRecurrence r, int steps)
    {
        var key = (r.Batch, r.Hidden, steps, r.Activation, r.Bh != null);
        lock (_plans)
            if (_plans.TryGetValue(key, out var known)) return known;
        var plan = Choose(r, steps);
        if (!_state.Recording) lock (_plans) _plans[key] = plan; // chosen while recording: untimed, so not kept
        return plan;
    }

    static RecurrencePlan Steps(string why) => new("steps", null, null, $"per-step ({why})");
    static RecurrencePlan GridPlan(PersistentRecurrence.Plan g, string? note = null) =>
        new($"persistent {g.Blocks}x{g.Cols}", g, null, note == null ? g.ToString() : $"{g}; {note}");
    static RecurrencePlan ClusterPlan(ClusterShape c, string? note = null) =>
        new($"cluster {c.Clusters}x{c.Size}", null, c, note == null ? ClusterRecurrence.Describe(c) : $"{ClusterRecurrence.Describe(c)}; {note}");

    RecurrencePlan Choose(PlainRecurrence r, int steps)
    {
        switch (_options.Recurrence)
        {
            case RecurrenceMode.Steps:
                return Steps("--recurrence steps");
            case RecurrenceMode.Persistent:
            {
                var g = _persistent.PlanFor(r.Batch, r.Hidden, force: true);
                return g.Runs ? GridPlan(g) : Steps(g.Reason + "; --recurrence persistent");
            }
            case RecurrenceMode.Cluster:
            {
                var (shapes, why) = _clusters.ShapesFor(r.Batch, r.Hidden);
                if (shapes.Count == 0) return Steps(why + "; --recurrence cluster");
                if (!_options.TimePlans || shapes.Count == 1 || _state.Recording)
                    return ClusterPlan(shapes.FirstOrDefault(s => s.Size == 8, shapes[0]));
                return Timed(r, steps, shapes.Select(s => ClusterPlan(s)).ToList(), "cluster");
            }
            default:
            {
                var rule = _persistent.PlanFor(r.Batch, r.Hidden);
                var untimed = rule.Runs ? GridPlan(rule) : Steps(rule.Reason!);
                if (!_options.TimePlans) return untimed;
                if (_state.Recording) return untimed with { Description = untimed.Description + "; not timed: first used while recording" };
                var candidates = new List<RecurrencePlan> { new("steps", null, null, "per-step") };
                var forced = _persistent.PlanFor(r.Batch, r.Hidden, force: true);
                if (forced.Runs) candidates.Add(GridPlan(forced));
                candidates.AddRange(_clusters.ShapesFor(r.Batch, r.Hidden).Shapes.Select(s => ClusterPlan(s)));
                return Timed(r, steps, candidates, "auto");
            }
        }
    }

    /// <summary>The fastest of <paramref name="candidates"/>: from the cache when it holds this key and its choice is
    /// still a candidate, else timed now (and stored).</summary>
    RecurrencePlan Timed(PlainRecurrence r, int steps, List<RecurrencePlan> candidates, string mode)
    {
        string key = CacheKey(r, steps, mode);
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
                timings.Add((c.Id, TimePlan(c, r, steps)));
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

    /// <summary>What the cache keys a choice by: the card, its driver, the layer (cell, activation, biases, H, B, T),
    /// the GEMM precision, the mode and the recurrence kernels' sources (a changed kernel is timed again).</summary>
    string CacheKey(PlainRecurrence r, int steps, string mode) =>
        $"{_ctx.DeviceName} {_ctx.Arch} driver {CudaContext.DriverVersion()} | rnn {r.Activation.ToString().ToLowerInvariant()}{(r.Bh != null ? " 2 biases" : "")} H {r.Hidden} B {r.Batch} T {steps} | {_options.Precision.ToString().ToLowerInvariant()} | {mode} | kernels {KernelsHash}";

    static readonly string KernelsHash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(
        string.Concat(new[] { "rnn_persistent.cu", "rnn_cluster.cu" }.Select(f => KernelSources.All[f])) + KernelSources.Headers["common.cuh"])))[..12].ToLowerInvariant();

    /// <summary>Microseconds per step (forward + backward) of <paramref name="plan"/> on scratch tensors shaped as
    /// <paramref name="r"/>'s (its weights, read only): one warm-up, then the median of three rounds.</summary>
    double TimePlan(RecurrencePlan plan, PlainRecurrence r, int steps)
    {
        int t = Math.Min(steps, TimedSteps), b = r.Batch, h = r.Hidden;
        using var pre = Zeros(t * b, h);
        using var hs = Zeros((t + 1) * b, h);
        using var dh = Zeros(t * b, h);
        using var dpre = Zeros(t * b, h);
        using var dh0 = Zeros(b, h);
        var scratch = r with { Pre = pre, Hs = hs, DH = dh, DPre = dpre, DH0 = dh0, WantDH0 = true };
        void Run()
        {
            RunForward(plan, scratch, t);
            RunBackward(plan, scratch, t);
        }
        Run();
        var rounds = Enumerable.Range(0, TimedRounds).Select(_ => DeviceSeconds(Run, 1) ?? 0).OrderBy(x => x).ToArray();
        return rounds[rounds.Length / 2] * 1e6 / t;
    }

    void RunForward(RecurrencePlan plan, PlainRecurrence r, int steps)
    {
        if (plan.Grid is { } g) Launch(RnnForwardPersistentOp.Instance, _persistent.Forward(r, steps, g));
        else if (plan.Cluster is { } c) Launch(RnnForwardClusterOp.Instance, new RnnForwardClusterOp.Args(c, r, steps));
        else for (int t = 0; t < steps; t++) PlainSteps.Forward(this, r, t);
    }

    void RunBackward(RecurrencePlan plan, PlainRecurrence r, int steps)
    {
        if (plan.Grid is { } g) Launch(RnnBackwardPersistentOp.Instance, _persistent.Backward(r, steps, g));
        else if (plan.Cluster is { } c) Launch(RnnBackwardClusterOp.Instance, new RnnBackwardClusterOp.Args(c, r, steps));
        else
        {
            for (int t = steps - 1; t >= 0; t--) PlainSteps.Backward(this, r, t, steps);
            PlainSteps.End(this, r);
        }
    }
}
