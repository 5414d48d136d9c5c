namespace CharRnn.Tests;

/// <summary>
/// What every test of this assembly runs under, set once before the first: <c>CHARRNN_PLAN_TIMING=off</c>, so a
/// <c>charrnn</c> run on the CUDA emulator (the CLI tests start it as a child process, which inherits this) keeps the
/// untimed recurrence rule: the emulator's timings mean nothing, and a timed choice would vary with the machine's load,
/// making output and bits vary from run to run. The planner's own tests (<see cref="RecurrencePlanTests"/>) turn the
/// timing on through <c>GpuOptions.TimePlans</c>.
/// </summary>
[SetUpFixture]
public class TestEnvironment
{
    [OneTimeSetUp]
    public void Set() => Environment.SetEnvironmentVariable("CHARRNN_PLAN_TIMING", "off");
}
