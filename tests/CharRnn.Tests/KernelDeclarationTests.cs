using System.Reflection;
using System.Text.RegularExpressions;
using CharRnn.Rnn.Backends;

namespace CharRnn.Tests;

/// <summary>
/// #22: every kernel is declared once in C# (<c>src/Rnn/Backends/Ops</c>: a <see cref="KernelOp{TArgs}"/> with an argument
/// record) and launched only from its declaration. This reads both sides — each declaration's parameter list as its
/// record writes it (<see cref="KernelOp.Signature"/>: names from the expressions passed, kinds from the writer's
/// overloads) and the <c>extern "C" __global__</c> definitions in <c>kernels/*.cu</c> — and fails a test, not a run,
/// when a declaration names no kernel, a kernel has no declaration, or a parameter differs in order, name (compared
/// without case and underscores) or kind (float*, int*, other pointer, int, float, unsigned long long).
/// </summary>
public class KernelDeclarationTests
{
    /// <summary>A kernel and its parameters as declared (C text, one per parameter).</summary>
    sealed record Kernel(string Name, string File, IReadOnlyList<string> Parameters);

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

    /// <summary>Every declaration in the library: each concrete <see cref="KernelOp"/> type's static <c>Instance</c>.</summary>
    public static IReadOnlyList<KernelOp> Declarations() =>
        typeof(KernelOp).Assembly.GetTypes()
            .Where(t => !t.IsAbstract && typeof(KernelOp).IsAssignableFrom(t))
            .Select(t => (KernelOp)(t.GetField("Instance", BindingFlags.Public | BindingFlags.Static)?.GetValue(null)
                ?? throw new InvalidOperationException($"{t.Name} has no public static Instance")))
            .OrderBy(o => o.Kernel, StringComparer.Ordinal).ToList();

    /// <summary>The C parameter's name (the last identifier) and kind.</summary>
    static (string Name, KernelArgKind? Kind) Parse(string parameter)
    {
        var name = Regex.Match(parameter, @"(\w+)\s*$").Groups[1].Value;
        var type = parameter[..^name.Length].Replace("const", "").Replace("__restrict__", "").Replace(" ", "");
        KernelArgKind? kind = type switch
        {
            "float*" => KernelArgKind.FloatPointer,
            "int*" => KernelArgKind.IntPointer,
            "int" => KernelArgKind.Int,
            "float" => KernelArgKind.Float,
            "unsignedlonglong" => KernelArgKind.U64,
            _ when type.EndsWith('*') => KernelArgKind.OtherPointer,
            _ => null,
        };
        return (name, kind);
    }

    static string Normal(string name) => name.Replace("_", "").ToLowerInvariant();

    [Test]
    public void EveryDeclarationMatchesItsKernelAndEveryKernelIsDeclared()
    {
        var kernels = Kernels(InteropTests.Root());
        var declarations = Declarations();
        Assert.That(kernels, Has.Count.GreaterThan(25), "kernels found in kernels/*.cu");
        Assert.That(declarations, Has.Count.GreaterThan(25), "declarations found in CharRnn.Rnn");
        var problems = new List<string>();
        foreach (var d in declarations)
        {
            if (!kernels.TryGetValue(d.Kernel, out var k))
            {
                problems.Add($"{d.GetType().Name} declares {d.Kernel}, which no kernels/*.cu defines");
                continue;
            }
            var sig = d.Signature();
            if (sig.Count != k.Parameters.Count)
            {
                problems.Add($"{d.GetType().Name}: writes {sig.Count} arguments ({string.Join(", ", sig.Select(p => p.Name))}); {k.File} declares {k.Parameters.Count} parameters");
                continue;
            }
            for (int i = 0; i < sig.Count; i++)
            {
                var (name, kind) = Parse(k.Parameters[i]);
                // a pointer to backend scratch (tables, partials, barrier state) may point at anything
                bool kindOk = kind == sig[i].Kind || (sig[i].Kind == KernelArgKind.OtherPointer && kind is KernelArgKind.FloatPointer or KernelArgKind.IntPointer or KernelArgKind.OtherPointer);
                if (Normal(sig[i].Name) != Normal(name))
                    problems.Add($"{d.Kernel} parameter {i + 1}: the declaration passes '{sig[i].Name}'; {k.File} names it '{name}'");
                else if (!kindOk)
                    problems.Add($"{d.Kernel} parameter {i + 1} ({name}): the declaration passes a {sig[i].Kind}; {k.File} declares '{k.Parameters[i]}'");
            }
        }
        // probe.cu is GpuProbe's own program (compiled and loaded apart; its kernel is looked up, never launched).
        var undeclared = kernels.Keys.Except(declarations.Select(d => d.Kernel)).Where(k => kernels[k].File != "probe.cu").Order().ToList();
        Assert.Multiple(() =>
        {
            Assert.That(problems, Is.Empty, "declarations that do not match their kernels");
            Assert.That(undeclared, Is.Empty, "kernels without a declaration");
            Assert.That(declarations.GroupBy(d => d.Kernel).Where(g => g.Count() > 1).Select(g => g.Key), Is.Empty, "kernels declared twice");
        });
    }

    /// <summary>The only launch is the typed one (<c>CudaBackend.Launch&lt;TArgs&gt;</c>): no kernel is launched by a
    /// name in a string, with positional arguments, anywhere else in <c>src/</c>.</summary>
    [Test]
    public void KernelsAreLaunchedOnlyThroughTheirDeclarations()
    {
        var root = InteropTests.Root();
        var launch = new Regex(@"\.(Launch|Launch2D|LaunchCooperative|LaunchCluster)\(");
        var sites = new List<string>();
        foreach (var file in Directory.GetFiles(Path.Combine(root, "src"), "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") || file.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}")) continue;
            var lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
                if (launch.IsMatch(lines[i]) && !lines[i].Contains("graph.Launch(")) sites.Add($"{Path.GetRelativePath(root, file)}:{i + 1}: {lines[i].Trim()}");
        }
        // The four in CudaBackend.Launch<TArgs> (plain, 2-D, cooperative, cluster) and CudaModule's own definitions.
        Assert.That(sites.Where(s => !s.StartsWith(Path.Combine("src", "Cuda", "CudaModule.cs"))).ToList(),
            Has.Count.EqualTo(4).And.All.StartWith(Path.Combine("src", "Rnn", "Backends", "Cuda", "CudaBackend.cs")), string.Join("\n", sites));
    }
}
