using CharRnn.Rnn;

namespace CharRnn.Tests;

/// <summary>
/// Every random test input is replayable: the seed is a stable hash (FNV-1a, 64-bit) of the test's full name — the same
/// in every process, unlike <c>string.GetHashCode</c> — or <c>CHARRNN_TEST_SEED</c> when set; a failed test prints it
/// (<see cref="ReportIfFailed"/>, from the fixture's TearDown) with the variable that replays it.
/// </summary>
public static class TestSeed
{
    public const string Variable = "CHARRNN_TEST_SEED";

    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, ulong> Used = new(); // by test id

    /// <summary>The current test's seed (remembered for <see cref="ReportIfFailed"/>).</summary>
    public static ulong Current()
    {
        var test = TestContext.CurrentContext.Test;
        ulong seed = ulong.TryParse(Environment.GetEnvironmentVariable(Variable), out var forced) ? forced : Of(test.FullName);
        Used[test.ID] = seed;
        return seed;
    }

    /// <summary>After a failed test that drew random inputs: the seed and how to replay it, in the test's output.</summary>
    public static void ReportIfFailed()
    {
        if (Used.TryRemove(TestContext.CurrentContext.Test.ID, out ulong seed)
            && TestContext.CurrentContext.Result.Outcome.Status == NUnit.Framework.Interfaces.TestStatus.Failed)
            TestContext.Out.WriteLine($"random inputs from seed {seed}: replay with {Variable}={seed} and a --filter for this test");
    }

    /// <summary>FNV-1a over the UTF-16 code units of <paramref name="name"/>.</summary>
    public static ulong Of(string name)
    {
        ulong h = 14695981039346656037;
        foreach (char c in name) h = (h ^ c) * 1099511628211;
        return h;
    }

    public static Rng Rng() => new(Current());
}
