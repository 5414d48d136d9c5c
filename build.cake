// CharRnn build script. Run through ./build.sh (dotnet tool restore && dotnet cake "$@"); pick a task with --target=NAME.
//   Clean    removes build outputs
//   Build    builds CharRnn.sln in Release
//   Test     runs the NUnit test exe and prints "N passed, N failed, N skipped" alone on a line
//   Publish  self-contained linux-x64 bundle (charrnn + test exe in one folder) for the GPU machine, in artifacts/gpu-bundle
//
// Test options: --filter=EXPR (the test exe's --filter, e.g. "TestCategory=Nvrtc"), --configuration=Debug|Release.

using System.Xml.Linq;

var target = Argument("target", "Test");
var configuration = Argument("configuration", "Release");
var filter = Argument("filter", "");
var artifacts = MakeAbsolute(Directory("./artifacts"));

Task("Clean").Does(() =>
{
    CleanDirectories("./src/**/bin/" + configuration);
    CleanDirectories("./src/**/obj");
    CleanDirectories("./tests/**/bin/" + configuration);
    CleanDirectories("./tests/**/obj");
    CleanDirectory(artifacts);
});

Task("Build").Does(() =>
{
    DotNetBuild("./CharRnn.sln", new DotNetBuildSettings { Configuration = configuration });
});

Task("Test").IsDependentOn("Build").Does(() =>
{
    var results = artifacts.Combine("test-results");
    CleanDirectory(results);
    var exe = File($"./tests/CharRnn.Tests/bin/{configuration}/net10.0/CharRnn.Tests");
    var args = new ProcessArgumentBuilder()
        .Append("--report-trx").Append("--report-trx-filename").Append("results.trx")
        .Append("--results-directory").AppendQuoted(results.FullPath);
    if (!string.IsNullOrEmpty(filter)) args.Append("--filter").AppendQuoted(filter);
    var exit = StartProcess(exe, new ProcessSettings { Arguments = args });
    var trx = results.CombineWithFilePath("results.trx").FullPath;
    if (!System.IO.File.Exists(trx)) throw new Exception($"The test run wrote no results (exit code {exit}).");
    var ns = XNamespace.Get("http://microsoft.com/schemas/VisualStudio/TeamTest/2010");
    var outcomes = XDocument.Load(trx).Descendants(ns + "UnitTestResult").Select(r => (string)r.Attribute("outcome")).ToList();
    int passed = outcomes.Count(o => o == "Passed");
    int failed = outcomes.Count(o => o == "Failed" || o == "Error" || o == "Timeout" || o == "Aborted");
    int skipped = outcomes.Count - passed - failed;
    // Written straight to stdout: Cake's logger would colour the numbers.
    Console.WriteLine();
    Console.WriteLine($"{passed} passed, {failed} failed, {skipped} skipped");
    if (failed > 0 || exit != 0) throw new Exception($"Tests failed ({failed} failed, exit code {exit}).");
    if (passed == 0) throw new Exception("No test passed.");
});

Task("Publish").Does(() =>
{
    var bundle = artifacts.Combine("gpu-bundle");
    CleanDirectory(bundle);
    foreach (var project in new[] { "./src/Cli/CharRnn.Cli.csproj", "./tests/CharRnn.Tests/CharRnn.Tests.csproj" })
        DotNetPublish(project, new DotNetPublishSettings
        {
            Configuration = "Release",
            Runtime = "linux-x64",
            SelfContained = true,
            OutputDirectory = bundle,
            MSBuildSettings = new DotNetMSBuildSettings().WithProperty("InvariantGlobalization", "true"),
        });
    // One compressed file to carry to the GPU machine (scripts/gpu-check.sh unpacks it).
    var tar = artifacts.CombineWithFilePath("gpu-bundle.tar.xz");
    var exit = StartProcess("tar", new ProcessSettings { Arguments = $"-cJf {tar.FullPath} -C {bundle.FullPath} .", EnvironmentVariables = new Dictionary<string, string> { ["XZ_OPT"] = "-6 -T0" } });
    if (exit != 0) throw new Exception("tar failed");
    Information($"Self-contained bundle in {bundle}, packed as {tar} ({new System.IO.FileInfo(tar.FullPath).Length / 1048576.0:F1} MiB)");
});

RunTarget(target);
