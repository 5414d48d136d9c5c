namespace CharRnn.Rnn;

/// <summary>
/// A problem the user can fix (bad input, bad hyperparameter, no GPU). The CLI prints <see cref="Exception.Message"/>
/// alone, without a stack trace, and exits non-zero. Messages name the problem and the fix.
/// </summary>
public class CharRnnException(string message, Exception? inner = null) : Exception(message, inner);
