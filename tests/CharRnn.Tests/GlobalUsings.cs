global using NUnit.Framework;
global using CharRnn.Rnn.Backends.Ops;
