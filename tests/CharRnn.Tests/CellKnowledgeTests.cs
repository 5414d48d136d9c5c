using CharRnn.Rnn;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;

namespace CharRnn.Tests;

/// <summary>
/// What other code knows of a cell comes from the cell (<see cref="RecurrentCell"/>): the memory
/// estimate's buffer counts match what a layer really allocates, the checkpoint's state tensors are the cell's carried
/// state, and the export name is the PyTorch module that computes it.
/// </summary>
public class CellKnowledgeTests
{
    static IEnumerable<TestCaseData> Specs()
    {
        yield return new TestCaseData(CellKind.Rnn, ModelKind.Scratch).SetName("rnn");
        yield return new TestCaseData(CellKind.Gru, ModelKind.Concise).SetName("gru (PyTorch's)");
        yield return new TestCaseData(CellKind.Gru, ModelKind.Scratch).SetName("gru (the book's)");
        yield return new TestCaseData(CellKind.Lstm, ModelKind.Concise).SetName("lstm");
    }

    [TestCaseSource(nameof(Specs))]
    public void TheMemoryEstimateCountsWhatALayerAllocates(CellKind cellKind, ModelKind kind)
    {
        const int V = 11, H = 7, B = 3, T = 5;
        var spec = new ModelSpec(kind, V, H, Cell: cellKind);
        using var be = TestBackends.Create("cpu-managed");
        using var model = new RnnModel(be, RnnParameters.Initialize(spec, new Rng(1)));
        using var layer = spec.CellType.CreateLayer(be, model.Layers[0], B, T);
        var (gate, hidden) = spec.CellType.WorkspaceBuffers;
        long estimate = (long)gate * T * B * spec.Gates * H + (long)hidden * (T + 1) * B * H;
        // The estimate leaves out a cell's B × H scratch rows (the LSTM's dc and dc0, the book GRU's d(r ⊙ h)).
        Assert.That(layer.WorkspaceFloats - estimate, Is.InRange(0, 2L * B * H),
            $"estimated {estimate} floats, the layer holds {layer.WorkspaceFloats}");
    }

    [TestCaseSource(nameof(Specs))]
    public void ACheckpointCarriesTheCellsState(CellKind cellKind, ModelKind kind)
    {
        var spec = new ModelSpec(kind, 11, 7, Cell: cellKind, Layers: 2);
        var names = spec.CellType.StateTensorNames().ToList();
        Assert.That(names, Is.EqualTo(cellKind == CellKind.Lstm
            ? new[] { "state/H0", "state/C0", "state/H1", "state/C1" }
            : new[] { "state/H0", "state/H1" }));
        Assert.That(spec.CellType.TorchModule, Is.EqualTo(cellKind switch
        {
            CellKind.Rnn => "nn.RNN",
            CellKind.Lstm => "nn.LSTM",
            _ => kind == ModelKind.Concise ? "nn.GRU" : null, // no PyTorch module computes the book's GRU
        }));
    }
}
