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

    /// <summary>The collective for this process: MPI when a launcher started several, else one rank.</summary>
    /// <param name="choice">--mpi: auto (the launcher's own library), mpich or openmpi; null: CHARRNN_MPI, else auto.</param>
    public static ICollective Detect(string? choice = null)
    {
        int n = LaunchedRanks();
        if (n <= 1) return SingleRank.Instance;
        var (abi, launcher) = Choose(choice ?? Environment.GetEnvironmentVariable(ChoiceVariable));
        return MpiRanks.Init(abi, n, launcher);
    }

    public const string ChoiceVariable = "CHARRNN_MPI";

    /// <summary>The library for this launch, and the launcher in words (with the variable that told).</summary>
    public static (MpiAbi Abi, string Launcher) Choose(string? choice)
    {
        static string? Env(string v) => Environment.GetEnvironmentVariable(v) is { Length: > 0 } s ? s : null;
        // Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE (4.x and 5.x); MPICH's Hydra sets PMI_SIZE; PMIx launchers
        // (Open MPI 5's prterun, Slurm's srun --mpi=pmix) set PMIX_SIZE.
        var (fromOmpi, fromPmi, fromPmix) = (Env("OMPI_COMM_WORLD_SIZE"), Env("PMI_SIZE"), Env("PMIX_SIZE"));
        string launcher = fromOmpi != null ? $"Open MPI's mpirun (OMPI_COMM_WORLD_SIZE={fromOmpi})"
            : fromPmi != null ? $"an MPICH launcher (PMI_SIZE={fromPmi})"
            : $"a PMIx launcher (PMIX_SIZE={fromPmix})";
        var abi = (choice ?? "auto").Trim().ToLowerInvariant() switch
        {
            "mpich" => MpiAbi.Mpich,
            "openmpi" or "open-mpi" or "ompi" => MpiAbi.OpenMpi,
            "auto" or "" => fromOmpi != null || (fromPmi == null && fromPmix != null) ? MpiAbi.OpenMpi : MpiAbi.Mpich,
            _ => throw new AlikeOnEveryRankException($"--mpi (or {ChoiceVariable}) must be auto, mpich or openmpi (got '{choice}')."),
        };
        return (abi, launcher);
    }
}
