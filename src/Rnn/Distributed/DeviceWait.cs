using System.Diagnostics;
using System.Globalization;

namespace CharRnn.Rnn.Distributed;

/// <summary>
/// Waiting for device work a peer takes part in, without trusting the peer: poll until the work is done, and give up —
/// aborting the collective first, so nothing keeps the device busy — on the first reported error or after the timeout.
/// Pure control flow (the checks are passed in), so every exit is tested without a hung GPU.
/// </summary>
public static class DeviceWait
{
    /// <param name="done">Whether the work is complete (an event query).</param>
    /// <param name="error">The collective's asynchronous error, or null while there is none.</param>
    /// <param name="abort">Ends the collective (ncclCommAbort); called once, before the exception.</param>
    public static void Until(Func<bool> done, Func<string?> error, TimeSpan timeout, Action abort, string what)
    {
        var clock = Stopwatch.StartNew();
        var spin = new SpinWait();
        while (true)
        {
            bool finished = done();
            if (error() is string e) // also after the work finished: a collective can end early on a failure
            {
                abort();
                throw new CharRnnException($"{what} failed: {e}. A rank died or lost its connection; the run stops here (checkpoints already written are intact).");
            }
            if (finished) return;
            if (clock.Elapsed > timeout)
            {
                abort();
                throw new RankTimeoutException(string.Create(CultureInfo.InvariantCulture,
                    $"{what} did not complete within {timeout.TotalSeconds:0.###} s (--rank-timeout): a rank hangs or died. The run stops here (checkpoints already written are intact); raise --rank-timeout if a rank is only slow."));
            }
            spin.SpinOnce(sleep1Threshold: -1); // as a blocking CUDA sync spins: no 1 ms sleeps added to every wait
        }
    }
}
