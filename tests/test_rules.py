"""Rule entry points, called without Snakemake: a bad input is one clear error, exit 1, and
nothing already computed is lost."""

from types import SimpleNamespace

import numpy as np
import pytest

from layersim.jobs import core as rules
from layersim.store import write_activations


def make_store(path, sample_id, constant_layer=False):
    rng = np.random.default_rng(0)
    n = len(sample_id)
    batch = {"conv": rng.normal(size=(n, 2, 3, 3)).astype(np.float32), "logits": rng.normal(size=(n, 3)).astype(np.float32)}
    if constant_layer:
        batch["dead"] = np.zeros((n, 4), np.float32)
        batch = {"conv": batch["conv"], "dead": batch["dead"], "logits": batch["logits"]}
    return write_activations(path, [batch], sample_id=np.asarray(sample_id), labels=np.zeros(n), attrs={})


def grams_smk(tmp_path, store):
    return SimpleNamespace(
        input=SimpleNamespace(store=str(store)),
        output=SimpleNamespace(grams=str(tmp_path / "grams" / store.name)),
        params=SimpleNamespace(batch_size=8, passes=2, dtype="float32", layer_block=4, cache_mb=64, scheduler_address=None, gram_kernel="syrk"),
        wildcards=SimpleNamespace(instance=store.stem),
        log=[str(tmp_path / "grams.log")],
        threads=1,
    )


def similarity_smk(tmp_path, a, b, out):
    return SimpleNamespace(
        input=SimpleNamespace(a=str(a), b=str(b)),
        output=SimpleNamespace(result=str(out)),
        wildcards=SimpleNamespace(a="a", b="b"),
        log=[str(tmp_path / "similarity.log")],
        threads=1,
    )


def similarity(tmp_path, a, b, out):
    """The grams job of each store, then the similarity job of the pair."""
    for store in {a, b}:
        rules.grams(grams_smk(tmp_path, store))
    rules.similarity(similarity_smk(tmp_path, tmp_path / "grams" / a.name, tmp_path / "grams" / b.name, out))


def test_different_sample_ids_exit_with_one_message(tmp_path, capsys):
    a = make_store(tmp_path / "a.zarr", np.arange(20))
    b = make_store(tmp_path / "b.zarr", np.arange(5, 25))
    with pytest.raises(SystemExit) as exit_info:
        similarity(tmp_path, a, b, tmp_path / "out.zarr")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "layersim similarity: error:" in err and "sample_id arrays differ" in err
    assert err.count("\n") == 1  # one line, no traceback
    assert not (tmp_path / "out.zarr").exists()
    assert a.exists() and b.exists()  # inputs untouched
    assert "sample_id arrays differ" in (tmp_path / "similarity.log").read_text()


def test_constant_layer_is_a_named_warning_and_nan(tmp_path, capsys):
    a = make_store(tmp_path / "a.zarr", np.arange(20), constant_layer=True)
    similarity(tmp_path, a, a, tmp_path / "out.zarr")
    err = capsys.readouterr().err
    assert "warning" in err and "dead" in err
    from layersim.store import read_similarity

    result = read_similarity(tmp_path / "out.zarr")
    assert np.isnan(result["cka"].sel(layer_a="dead").values).all()
    assert np.isfinite(result["cka"].sel(layer_a="conv", layer_b="conv").item())
    assert result.attrs["undefined_layers_a"] == ["dead"]


def test_train_refuses_an_epoch_that_is_not_configured(tmp_path, capsys):
    job = SimpleNamespace(
        params=SimpleNamespace(train={"epochs": 3}, arch={"depth": 8}, dataset={"name": "digits"}),
        wildcards=SimpleNamespace(model="m", seed="0", epoch="5"),
        output=SimpleNamespace(checkpoint=str(tmp_path / "e5.pt"), history=str(tmp_path / "h.json")),
        log=[str(tmp_path / "train.log")],
        threads=1,
    )
    with pytest.raises(SystemExit):
        rules.train(job)
    assert "asked for epoch 5 but model m is configured for 3 epochs" in capsys.readouterr().err
    assert not (tmp_path / "e5.pt").exists()


def test_a_device_the_job_does_not_have_is_one_clear_error(tmp_path, capsys):
    a = make_store(tmp_path / "a.zarr", np.arange(20))
    job = grams_smk(tmp_path, a)
    job.config = {"device": "cuda:3"}
    with pytest.raises(SystemExit) as exit_info:
        rules.grams(job)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "layersim grams: error: device 'cuda:3' was asked for but this job sees" in err
    assert not (tmp_path / "grams").exists() and a.exists()


def test_device_auto_runs_the_similarity_on_what_the_job_sees(tmp_path):
    import torch

    from layersim.store import read_similarity

    a = make_store(tmp_path / "a.zarr", np.arange(20))
    job = grams_smk(tmp_path, a)
    job.config = {"device": "auto"}
    rules.grams(job)
    rules.similarity(similarity_smk(tmp_path, tmp_path / "grams" / "a.zarr", tmp_path / "grams" / "a.zarr", tmp_path / "out.zarr"))
    expected = "cuda" if torch.cuda.is_available() else "cpu (numpy)"
    assert read_similarity(tmp_path / "out.zarr").attrs["device"] == expected


def test_the_grams_job_uses_the_kernel_the_gram_kernel_job_chose(tmp_path):
    import json

    from layersim.engine.grams import GRAM_KERNELS
    from layersim.store import GramStore

    chosen = tmp_path / "gram_kernel.json"
    rules.gram_kernel(SimpleNamespace(params=SimpleNamespace(batch_size=8, dtype="float32"), output=SimpleNamespace(kernel=str(chosen)), log=[str(tmp_path / "k.log")], threads=1))
    record = json.loads(chosen.read_text())
    assert set(record["seconds"]) == set(GRAM_KERNELS) and record["gram_kernel"] == min(record["seconds"], key=record["seconds"].get)
    a = make_store(tmp_path / "a.zarr", np.arange(20))
    for kernel in ("blocked2", "gemm"):  # what a recorded choice says, not a new measurement
        chosen.write_text(json.dumps({**record, "gram_kernel": kernel}))
        job = grams_smk(tmp_path / kernel, a)
        job.params.gram_kernel, job.input.kernel = "auto", str(chosen)
        (tmp_path / kernel).mkdir()
        rules.grams(job)
        assert GramStore(job.output.grams).attrs["gram_kernel"] == kernel
