namespace CharRnn.Tests;

/// <summary>The op tests' seeds replay in another process: the hash is fixed (FNV-1a 64 over UTF-16 code units,
/// value computed independently in Python), not the per-process randomised <c>string.GetHashCode</c>.</summary>
public class TestSeedTests
{
    [Test]
    public void TheSeedOfANameIsFixedAcrossProcesses()
    {
        Assert.That(TestSeed.Of("CharRnn.Tests.X"), Is.EqualTo(11206368117539494984UL));
        Assert.That(TestSeed.Of("CharRnn.Tests.Y"), Is.Not.EqualTo(TestSeed.Of("CharRnn.Tests.X")));
    }
}
