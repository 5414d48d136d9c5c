namespace CharRnn.Rnn;

/// <summary>
/// A problem the user can fix (bad input, bad hyperparameter, no GPU). The CLI prints <see cref="Exception.Message"/>
/// alone, without a stack trace, and exits non-zero. Messages name the problem and the fix.
/// </summary>
public class CharRnnException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// A problem found from what every rank of a job shares — the command line, the options — before any rank has started
/// a collective: every rank finds it alike and stops, so the job ends by MPI_Finalize without MPI_Abort (whose launcher
/// line only repeated the error).
/// </summary>
public sealed class AlikeOnEveryRankException(string message) : CharRnnException(message);

/// <summary>A GPU that is there but failed (out of memory, a driver error) where the user asked for it: its own exit
/// code (3), as every GPU failure.</summary>
public sealed class GpuFailedException(string message, Exception? inner = null) : CharRnnException(message, inner);
