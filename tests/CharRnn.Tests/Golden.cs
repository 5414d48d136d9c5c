using System.Text.Json;

namespace CharRnn.Tests;

/// <summary>Reads the float64 PyTorch golden files copied into tests/CharRnn.Tests/golden (see golden/README.md).</summary>
public sealed class Golden
{
    readonly JsonElement _root;

    Golden(JsonElement root) => _root = root;

    public static string Dir => Path.Combine(AppContext.BaseDirectory, "golden");

    public static Golden Load(string file) =>
        new(JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, file))).RootElement);

    public JsonElement Get(string path)
    {
        var e = _root;
        foreach (var part in path.Split('/')) e = e.GetProperty(part);
        return e;
    }

    public double[] T(string path) => Get(path).GetProperty("data").EnumerateArray().Select(x => x.GetDouble()).ToArray();
    public int[] Ints(string path) => Get(path).GetProperty("data").EnumerateArray().Select(x => x.GetInt32()).ToArray();
    public int[] Shape(string path) => Get(path).GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray();
    public double D(string path) => Get(path).GetDouble();
    public int I(string path) => Get(path).GetInt32();
    public string S(string path) => Get(path).GetString()!;

    /// <summary>Transpose of a (rows × cols) row-major matrix.</summary>
    public static double[] Transpose(double[] a, int rows, int cols)
    {
        var r = new double[a.Length];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) r[j * rows + i] = a[i * cols + j];
        return r;
    }
}
