"""Figures: labels, thinning, masked undefined entries."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.image
import numpy as np
import pytest
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


def _resnet56_result():
    """A 167-layer (ResNet-56) self-similarity result as compare_models returns it (fixed values)."""
    from layersim.models.torch import CifarResNet, layer_names

    names = layer_names(CifarResNet(56, 1, 10, 1))
    assert len(names) == 167
    i = np.arange(len(names))
    cka = np.exp(-np.abs(i[:, None] - i[None, :]) / 40.0)
    return xr.DataArray(cka, dims=("layer_a", "layer_b"), coords={"layer_a": names, "layer_b": names}, name="cka", attrs={"model_a": "resnet56", "model_b": "resnet56"})


def test_notebook_result_gets_the_pipelines_heatmap(tmp_path):
    """heatmap_figure takes the notebook's DataArray and draws the very image of the pipeline's Dataset."""
    notebook = _resnet56_result()
    pipeline = xr.Dataset({"cka": notebook, "hsic_sum": notebook * 2}, attrs=dict(notebook.attrs, n_batches=10))
    heatmap_figure(notebook, tmp_path / "notebook.png")
    heatmap_figure(pipeline, tmp_path / "pipeline.png")
    np.testing.assert_array_equal(matplotlib.image.imread(tmp_path / "notebook.png"), matplotlib.image.imread(tmp_path / "pipeline.png"))


def test_heatmap_style_at_167_layers():
    import matplotlib.pyplot as plt

    from layersim.plots import heatmap

    fig = heatmap(_resnet56_result())
    ax, colorbar_ax = fig.axes
    image = ax.get_images()[0]
    assert image.get_cmap().name.startswith("magma") and image.get_clim() == (0.0, 1.0)
    assert ax.get_title() == "CKA: resnet56 vs resnet56"
    assert colorbar_ax.get_ylim() == (0.0, 1.0)
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        texts = [t.get_text() for t in labels]
        assert 2 <= len(texts) <= 12 and texts[0] == "stem.conv" and texts[-1] == "logits"
    # labels of neither axis overlap one another once drawn
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for labels, coord in ((ax.get_yticklabels(), "y"), (ax.get_xticklabels(), "x")):
        boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: getattr(b, coord + "0"))
        for lo, hi in zip(boxes, boxes[1:]):
            assert getattr(lo, coord + "1") <= getattr(hi, coord + "0")
    plt.close(fig)


def test_heatmap_refuses_a_result_without_cka(tmp_path):
    from layersim.errors import LayersimError

    result = xr.Dataset({"value": (("layer_a", "layer_b"), np.eye(2))}, coords={"layer_a": ["a", "b"], "layer_b": ["a", "b"]})
    with pytest.raises(LayersimError, match="no 'cka' variable"):
        heatmap_figure(result, tmp_path / "h.png")
