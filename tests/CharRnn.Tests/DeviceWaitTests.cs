using CharRnn.Rnn;
using CharRnn.Rnn.Distributed;

namespace CharRnn.Tests;

/// <summary>
/// <see cref="DeviceWait"/>, the poll NCCL ranks use instead of a blocking sync, through each of its exits with fake
/// checks (a hung GPU cannot be had on demand): done at once, done after a while, a peer's error, a timeout.
/// </summary>
public class DeviceWaitTests
{
    [Test]
    public void ReturnsWhenTheWorkIsDoneWithoutAborting()
    {
        int polls = 0, aborts = 0;
        DeviceWait.Until(() => ++polls >= 5, () => null, TimeSpan.FromSeconds(10), () => aborts++, "x");
        Assert.That((polls, aborts), Is.EqualTo((5, 0)));
    }

    [Test]
    public void APeersErrorAbortsOnceAndNamesIt()
    {
        int polls = 0, aborts = 0;
        var e = Assert.Throws<CharRnnException>(() =>
            DeviceWait.Until(() => false, () => ++polls < 3 ? null : "remote process exited (NCCL error 6)", TimeSpan.FromSeconds(10), () => aborts++, "an NCCL all-reduce"))!;
        Assert.That(aborts, Is.EqualTo(1));
        Assert.That(e.Message, Does.StartWith("an NCCL all-reduce failed: remote process exited (NCCL error 6)."));
    }

    [Test]
    public void WorkThatNeverCompletesTimesOutAndAborts()
    {
        int aborts = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<RankTimeoutException>(() =>
            DeviceWait.Until(() => false, () => null, TimeSpan.FromMilliseconds(50), () => aborts++, "an NCCL all-reduce"))!;
        Assert.That(aborts, Is.EqualTo(1));
        Assert.That(clock.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(50)));
        Assert.That(e.Message, Does.Contain("did not complete within 0.05 s (--rank-timeout)"));
    }

    /// <summary>A failed collective can still let the device finish (NCCL ends its kernels on an error): the error wins.</summary>
    [Test]
    public void AnErrorCountsEvenWhenTheWorkFinished()
    {
        int aborts = 0;
        Assert.Throws<CharRnnException>(() => DeviceWait.Until(() => true, () => "unhandled cuda error (NCCL error 1)", TimeSpan.FromSeconds(10), () => aborts++, "x"));
        Assert.That(aborts, Is.EqualTo(1));
    }
}
