"""Figures: labels, thinning, masked undefined entries."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.image
import numpy as np
import xarray as xr

from layersim.plots import draw_heatmap, heatmap_figure, thinned_ticks


def test_thinned_ticks_keep_first_and_last():
    names = [f"l{i}" for i in range(59)]
    pos, labels = thinned_ticks(names, 12)
    assert len(pos) <= 12 and pos[0] == 0 and pos[-1] == 58 and labels[-1] == "l58"
    assert thinned_ticks(names[:5], 12) == (list(range(5)), names[:5])


def test_undefined_entries_are_grey(tmp_path):
    cka = np.full((4, 4), 0.5)
    cka[2, :] = np.nan  # an undefined layer of model a
    result = xr.Dataset({"cka": (("layer_a", "layer_b"), cka)}, coords={"layer_a": list("abcd"), "layer_b": list("wxyz")}, attrs={"model_a": "A", "model_b": "B"})
    heatmap_figure(result, tmp_path / "h.png")
    image = matplotlib.image.imread(tmp_path / "h.png")
    assert image.shape[0] > 100
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    mesh = draw_heatmap(ax, cka, list("abcd"), list("wxyz"))
    data = mesh.get_array()
    assert np.ma.is_masked(data) and data.mask[2].all() and not data.mask[1].any()
    assert np.allclose(mesh.get_cmap().get_bad()[:3], 0.6)  # drawn grey
    assert [t.get_text() for t in ax.get_yticklabels()] == list("abcd")
    plt.close(fig)
