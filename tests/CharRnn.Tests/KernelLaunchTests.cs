using System.Text.RegularExpressions;

namespace CharRnn.Tests;

/// <summary>
/// #22: kernels are launched by name with positional arguments, which the driver checks only at run time (and a GPU
/// only by faulting). This reads both sides of every launch — the C# call sites in <c>src/</c> and the
/// <c>extern "C" __global__</c> definitions in <c>kernels/*.cu</c> — and fails a test, not a run, when a launch names no
/// kernel, passes a different number of arguments than the kernel has parameters, or passes a pointer
/// (<c>Ptr(…)</c>) where the kernel takes a value or the reverse; and when a kernel is launched nowhere.
/// </summary>
public class KernelLaunchTests
{
    /// <summary>A kernel and its parameters as declared (C text, one per parameter).</summary>
    sealed record Kernel(string Name, string File, IReadOnlyList<string> Parameters);

    /// <summary>One launch site: the kernel it names and its kernel arguments (C# expressions, in order).</summary>
    sealed record Site(string Name, string Where, IReadOnlyList<string> Arguments);

    static Dictionary<string, Kernel> Kernels(string root)
    {
        var kernels = new Dictionary<string, Kernel>();
        var def = new Regex(@"extern\s+""C""\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)");
        foreach (var file in Directory.GetFiles(Path.Combine(root, "kernels"), "*.cu"))
        {
            var text = Regex.Replace(Regex.Replace(File.ReadAllText(file), @"//[^\n]*", ""), @"/\*.*?\*/", "", RegexOptions.Singleline);
            foreach (Match m in def.Matches(text))
            {
                var ps = m.Groups[2].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
                kernels.Add(m.Groups[1].Value, new Kernel(m.Groups[1].Value, Path.GetFileName(file), ps));
            }
        }
        return kernels;
    }

    /// <summary>The arguments of the call whose '(' is at <paramref name="open"/>, split at its top-level commas.</summary>
    static List<string> Arguments(string text, int open)
    {
        var args = new List<string>();
        int depth = 0, start = open + 1;
        for (int i = open; i < text.Length; i++)
        {
            char c = text[i];
            if (c == '"') { i = text.IndexOf('"', i + 1); continue; }
            if (c is '(' or '[' or '{') depth++;
            else if (c is ')' or ']' or '}')
            {
                if (--depth == 0)
                {
                    args.Add(text[start..i].Trim());
                    return args;
                }
            }
            else if (c == ',' && depth == 1)
            {
                args.Add(text[start..i].Trim());
                start = i + 1;
            }
        }
        throw new InvalidOperationException("unbalanced call at " + open);
    }

    static List<Site> Sites(string root)
    {
        var sites = new List<Site>();
        // Launch("k", grid, args…) · LaunchMulti("k", gridX, table, count, args…): the table is the kernel's first
        // parameter · _kernel("k").LaunchCooperative(blocks, threads, shared, stream, args…)
        var call = new Regex(@"\b(Launch|LaunchMulti)\(\s*""(\w+)""|\b_kernel\(""(\w+)""\)\.LaunchCooperative\(");
        foreach (var file in Directory.GetFiles(Path.Combine(root, "src"), "*.cs", SearchOption.AllDirectories))
        {
            var text = File.ReadAllText(file);
            foreach (Match m in call.Matches(text))
            {
                bool cooperative = m.Groups[3].Success;
                var a = Arguments(text, cooperative ? m.Index + m.Length - 1 : text.IndexOf('(', m.Index));
                string where = $"{Path.GetFileName(file)}:{text[..m.Index].Count(c => c == '\n') + 1}";
                if (cooperative) sites.Add(new Site(m.Groups[3].Value, where, a.Skip(4).ToList()));
                else if (m.Groups[1].Value == "Launch") sites.Add(new Site(m.Groups[2].Value, where, a.Skip(2).ToList()));
                else sites.Add(new Site(m.Groups[2].Value, where, a.Skip(4).Prepend("Ptr(table)").ToList()));
            }
        }
        return sites;
    }

    static bool IsPointerArgument(string arg) => arg.StartsWith("Ptr(") || arg.StartsWith("KernelArg.Ptr(");

    [Test]
    public void EveryLaunchMatchesItsKernelAndEveryKernelIsLaunched()
    {
        var root = InteropTests.Root();
        var kernels = Kernels(root);
        var sites = Sites(root);
        Assert.That(kernels, Has.Count.GreaterThan(20), "kernels found in kernels/*.cu");
        Assert.That(sites, Has.Count.GreaterThan(20), "launch sites found in src/");
        var problems = new List<string>();
        foreach (var s in sites)
        {
            if (!kernels.TryGetValue(s.Name, out var k))
            {
                problems.Add($"{s.Where}: launches {s.Name}, which no kernels/*.cu defines");
                continue;
            }
            if (s.Arguments.Count != k.Parameters.Count)
            {
                problems.Add($"{s.Where}: {s.Name} gets {s.Arguments.Count} arguments; {k.File} declares {k.Parameters.Count} parameters");
                continue;
            }
            for (int i = 0; i < k.Parameters.Count; i++)
            {
                bool pointer = k.Parameters[i].Contains('*'), passed = IsPointerArgument(s.Arguments[i]);
                if (pointer != passed)
                    problems.Add($"{s.Where}: {s.Name} argument {i + 1} ({s.Arguments[i]}) is {(passed ? "a pointer" : "a value")}; the kernel's parameter is '{k.Parameters[i]}'");
                else if (!pointer && s.Arguments[i].StartsWith("KernelArg.U64(") != k.Parameters[i].Contains("long long"))
                    problems.Add($"{s.Where}: {s.Name} argument {i + 1} ({s.Arguments[i]}) is not 64-bit like '{k.Parameters[i]}'");
            }
        }
        // probe.cu is GpuProbe's own program (compiled and loaded apart; its kernel is looked up, never launched).
        var unlaunched = kernels.Keys.Except(sites.Select(s => s.Name)).Where(k => kernels[k].File != "probe.cu").Order().ToList();
        Assert.Multiple(() =>
        {
            Assert.That(problems, Is.Empty, "launches that do not match their kernels");
            Assert.That(unlaunched, Is.Empty, "kernels no C# code launches");
        });
    }
}
