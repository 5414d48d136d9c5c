namespace CharRnn.Tests;

/// <summary>
/// Rules about the sources themselves that review depends on: every text file is text (a raw NUL byte makes git show a
/// file's diffs as binary, and review tools skip it — write <c>\0</c> in a literal instead).
/// </summary>
public class SourceRulesTests
{
    static readonly string[] TextExtensions = [".cs", ".cu", ".cuh", ".cpp", ".h", ".sh", ".py", ".md", ".cake", ".csproj", ".props", ".S"];

    [Test]
    public void NoSourceFileHoldsANulByte()
    {
        var root = InteropTests.Root();
        string Sep(string s) => Path.DirectorySeparatorChar + s + Path.DirectorySeparatorChar;
        var files = new[] { "src", "tests", "kernels", "scripts", "bench" }
            .SelectMany(d => Directory.EnumerateFiles(Path.Combine(root, d), "*", SearchOption.AllDirectories))
            .Where(f => TextExtensions.Contains(Path.GetExtension(f)) && !f.Contains(Sep("obj")) && !f.Contains(Sep("bin")))
            .ToList();
        Assert.That(files, Has.Count.GreaterThan(100), "the source tree was found");
        var withNul = files.Where(f => File.ReadAllBytes(f).Contains((byte)0)).Select(f => Path.GetRelativePath(root, f)).ToList();
        Assert.That(withNul, Is.Empty, "raw NUL bytes (git treats these files as binary): escape them as \\0");
    }
}
