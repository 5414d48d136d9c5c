namespace CharRnn.Rnn.Distributed;

/// <summary>How this process was started: by mpiexec (MPICH's Hydra sets PMI_SIZE; Open MPI's mpirun OMPI_COMM_WORLD_SIZE) or alone.</summary>
public static class Launch
{
    /// <summary>The number of processes mpiexec started, or 1.</summary>
    public static int LaunchedRanks()
    {
        foreach (var v in new[] { "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE" })
            if (int.TryParse(Environment.GetEnvironmentVariable(v), out int n) && n > 1) return n;
        return 1;
    }

    /// <summary>This rank's index among the processes of its machine (for choosing a GPU).</summary>
    public static int LocalRank()
    {
        foreach (var v in new[] { "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK" })
            if (int.TryParse(Environment.GetEnvironmentVariable(v), out int r) && r >= 0) return r;
        return 0;
    }

    /// <summary>The collective for this process: MPI when mpiexec started several, else one rank.</summary>
    public static ICollective Detect() => LaunchedRanks() > 1 ? MpiRanks.Init() : SingleRank.Instance;
}
