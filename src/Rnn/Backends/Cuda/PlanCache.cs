using System.Text.Json;
using System.Text.Json.Nodes;
using CharRnn.Cuda;

namespace CharRnn.Rnn.Backends.Cuda;

/// <summary>
/// The recurrence plans timed on this machine (cuDNN's find step, cached as <c>cudnn.benchmark</c> does per process,
/// but on disk): <c>plans.json</c> next to the kernel cache (<c>$XDG_CACHE_HOME/charrnn</c> or <c>~/.cache/charrnn</c>),
/// <c>CHARRNN_PLAN_CACHE</c> names another file, <c>CHARRNN_PLAN_CACHE=off</c> keeps nothing (every run times again).
/// One entry per key (card, driver, cell, shape, precision, kernel sources): the plan chosen and every plan's time.
/// A file that cannot be read or written is ignored (the plans are timed again): it is a cache, never an input.
/// </summary>
public static class PlanCache
{
    /// <summary>One timed choice: the plan's id and each candidate's microseconds per step (forward + backward).</summary>
    public sealed record Entry(string Plan, IReadOnlyList<(string Plan, double Micros)> Timings, string When);

    /// <summary>The file, or null when the cache is off.</summary>
    public static string? FilePath()
    {
        var env = Environment.GetEnvironmentVariable("CHARRNN_PLAN_CACHE");
        if (env is "off" or "0") return null;
        return Path.GetFullPath(!string.IsNullOrEmpty(env) ? env : Path.Combine(KernelCompiler.CacheHome(), "plans.json"));
    }

    static readonly object Gate = new();

    /// <summary>Every entry of the file (empty when there is none or it cannot be read).</summary>
    public static IReadOnlyDictionary<string, Entry> ReadAll()
    {
        var result = new Dictionary<string, Entry>();
        if (FilePath() is not string path) return result;
        lock (Gate)
        {
            try
            {
                foreach (var (key, node) in ReadRoot(path))
                    if (Parse(node) is Entry e) result[key] = e;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or FormatException) { }
        }
        return result;
    }

    public static Entry? Find(string key) => ReadAll().TryGetValue(key, out var e) ? e : null;

    /// <summary>Adds or replaces <paramref name="key"/>'s entry (read, change, write atomically); false when the
    /// cache is off or the file cannot be written.</summary>
    public static bool Store(string key, Entry entry)
    {
        if (FilePath() is not string path) return false;
        lock (Gate)
        {
            try
            {
                var root = ReadRoot(path);
                var timings = new JsonArray();
                foreach (var (plan, micros) in entry.Timings) timings.Add((JsonNode)new JsonObject { ["plan"] = plan, ["us_per_step"] = Math.Round(micros, 3) });
                root[key] = new JsonObject { ["plan"] = entry.Plan, ["timings"] = timings, ["when"] = entry.When };
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                AtomicFile.WriteAllText(path, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
                return true;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
        }
    }

    /// <summary>The file's object: empty when there is no file or it is not a JSON object (an I/O error goes to the
    /// caller).</summary>
    static JsonObject ReadRoot(string path)
    {
        try
        {
            return File.Exists(path) && JsonNode.Parse(File.ReadAllText(path)) is JsonObject o ? o : new JsonObject();
        }
        catch (JsonException)
        {
            return new JsonObject();
        }
    }

    static Entry? Parse(JsonNode? node)
    {
        if (node is not JsonObject o || o["plan"]?.GetValue<string>() is not string plan || o["timings"] is not JsonArray a) return null;
        var timings = new List<(string, double)>();
        foreach (var t in a)
            if (t?["plan"]?.GetValue<string>() is string p && t["us_per_step"] is JsonNode us) timings.Add((p, us.GetValue<double>()));
        return new Entry(plan, timings, o["when"]?.GetValue<string>() ?? "");
    }
}
