namespace CharRnn.Tests;

/// <summary>Element-wise closeness with a stated tolerance: |a − e| ≤ atol + rtol·|e|.</summary>
public static class Check
{
    public static void Close(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double atol, double rtol, string what)
    {
        Assert.That(actual.Count, Is.EqualTo(expected.Count), $"{what}: length");
        double worst = 0;
        int worstAt = -1;
        for (int i = 0; i < expected.Count; i++)
        {
            double err = Math.Abs(actual[i] - expected[i]);
            double allowed = atol + rtol * Math.Abs(expected[i]);
            if (!(err <= allowed) && (worstAt < 0 || err - allowed > worst)) { worst = err - allowed; worstAt = i; }
        }
        if (worstAt >= 0)
            Assert.Fail($"{what}: element {worstAt} is {actual[worstAt]:R}, expected {expected[worstAt]:R} " +
                        $"(|err| {Math.Abs(actual[worstAt] - expected[worstAt]):E3} > {atol:E1} + {rtol:E1}·|expected|)");
    }

    public static void Close(IReadOnlyList<double> expected, IReadOnlyList<float> actual, double atol, double rtol, string what) =>
        Close(expected, actual.Select(x => (double)x).ToArray(), atol, rtol, what);

    public static void Close(double expected, double actual, double atol, double rtol, string what) =>
        Close([expected], [actual], atol, rtol, what);

    public static double[] ToDouble(float[] a) => a.Select(x => (double)x).ToArray();
    public static float[] ToFloat(double[] a) => a.Select(x => (float)x).ToArray();
}
