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
