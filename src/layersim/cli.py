"""The ``layersim`` command: look into stores and results, draw heatmaps, list a config's outputs
(examples: README.md). Errors are one line on stderr (``layersim <command>: error: …``) and exit status 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from layersim import __version__
from layersim.errors import LayersimError


def _print_attrs(attrs) -> None:
    """Each attr but the layer list, one a line, cut to 100 characters."""
    for key in sorted(attrs.keys() - {"layers"}):
        text = str(attrs[key])
        print(f"  {key}: {text if len(text) <= 100 else text[:97] + '...'}")


def inspect(path: Path, *, verify: bool = False) -> None:
    """Print an activation store's samples, layers with their shapes and provenance attrs (or a
    Gram store's or a similarity result's sizes and attrs). ``verify`` reads every row of every layer and fails
    on a row that cannot be read or holds NaN/Inf."""
    from layersim.store import StoreError

    if not path.exists():
        raise StoreError(f"{path} does not exist")
    try:
        _inspect(path, verify)
    except (LayersimError, BrokenPipeError):
        raise
    except Exception as err:  # zarr and the readers raise several types for a damaged or foreign folder
        raise StoreError(f"{path} cannot be read ({type(err).__name__}: {err}); it is damaged: delete it and rerun the step that wrote it") from err


def _inspect(path: Path, verify: bool) -> None:
    import numpy as np
    import zarr

    from layersim.store import ActivationStore, GramStore, StoreError, read_similarity

    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    if "grams" in group:  # a Gram store
        grams = GramStore(path)
        n_batches = len(grams.self_hsic)
        print(f"{path}: Gram store, {n_batches} minibatches of {grams.n} samples, {len(grams.layers)} layers, {grams.dtype}")
        _print_attrs(grams.attrs)
        if verify:
            for k in range(n_batches):
                if not np.isfinite(grams.batch(k)).all():
                    raise StoreError(f"{path}: the Grams of minibatch {k + 1} hold NaN/Inf; the store is damaged: delete it and rerun the grams step")
            print("verified: every minibatch's Grams read, checksums match, all finite")
        return
    if "cka" in group and "layers" not in attrs:  # a similarity result
        result = read_similarity(path)
        print(f"{path}: similarity result, {result.sizes['layer_a']} × {result.sizes['layer_b']} layers")
        print(f"variables: {', '.join(sorted(result.data_vars))}")
        _print_attrs(attrs)
        return
    store = ActivationStore(path)
    print(f"{path}: activation store, {len(store)} samples, {len(store.layers)} layers, {store.nbytes / 2**20:.1f} MiB")
    print("provenance:")
    _print_attrs(store.attrs)
    print("layers (features per sample):")
    width = max(len(layer) for layer in store.layers)
    for layer in store.layers:
        array = store.group[layer]
        # a layer's feature dims are named "<layer>.<dim>" in the store (one namespace per layer)
        dims = ", ".join(d.removeprefix(f"{layer}.") for d in (array.metadata.dimension_names or ())[1:])
        print(f"  {layer:<{width}}  {str(tuple(array.shape[1:])):<16} {array.dtype}  ({dims})")
    if verify:
        step = max(1, (store.group[store.layers[0]].shards or store.group[store.layers[0]].chunks)[0])
        for layer in store.layers:
            for lo in range(0, len(store), step):
                rows = store.read(layer, np.arange(lo, min(lo + step, len(store))))
                if not np.isfinite(rows).all():
                    bad = lo + int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
                    raise StoreError(f"{path}: layer {layer!r} holds NaN/Inf at row {bad}; the store is damaged: delete it and rerun the extract step")
        print("verified: every row of every layer read, all finite")


def heatmap(result: Path, out: Path, *, title: str | None = None, max_labels: int = 12) -> None:
    """Render a similarity result with the pipeline's heatmap (:func:`layersim.plots.heatmap_figure`)."""
    from layersim.plots import heatmap_figure
    from layersim.store import StoreError, read_similarity

    try:
        dataset = read_similarity(result)
    except LayersimError:
        raise
    except Exception as err:  # zarr/xarray raise several types for a damaged result
        raise StoreError(f"{result} cannot be read as a similarity result ({type(err).__name__}: {err}); rerun the similarity step that wrote it") from err
    heatmap_figure(dataset, out, title=title, max_labels=max_labels)


def targets(configfile: Path | None, snakefile: Path) -> None:
    """Print every output the workflow would build (``snakemake --summary``, run in the
    Snakefile's folder: output paths are relative to it) with its plan."""
    if importlib.util.find_spec("snakemake") is None:
        raise LayersimError("listing targets needs Snakemake, which is not installed: pip install 'layersim[workflow]' (or run bash scripts/setup.sh)")
    if not snakefile.is_file():
        raise LayersimError(f"no workflow at {snakefile}: run this in the layersim repository (where the Snakefile is) or pass --snakefile")
    command = [sys.executable, "-m", "snakemake", "--snakefile", snakefile.name, "--summary", "--cores", "1"]
    if configfile is not None:
        if not configfile.is_file():
            raise LayersimError(f"config file {configfile} does not exist")
        command += ["--configfile", str(configfile.resolve())]
    done = subprocess.run(command, capture_output=True, text=True, cwd=snakefile.resolve().parent)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise LayersimError(f"snakemake could not plan this config (exit {done.returncode}); its message is above")
    rows = [line.split("\t") for line in done.stdout.splitlines() if line.count("\t") >= 5]
    rows = [r for r in rows if r[0] != "output_file"]
    width = max((len(r[2]) for r in rows), default=4)
    for r in rows:
        print(f"{r[2]:<{width}}  {r[5]:<15} {r[0]}")
    print(f"{len(rows)} outputs, {sum(r[5] != 'no update' for r in rows)} to (re)build")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="layersim", description="Representation similarity (minibatch CKA) of neural networks: look into activation stores and similarity results, draw heatmaps, list what a config builds. The pipeline itself runs with snakemake (see README.md).")
    parser.add_argument("--version", action="version", version=f"layersim {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = commands.add_parser("inspect", help="show an activation store's layers, shapes, samples and provenance", description="Show an activation store's samples, layers (feature shape, dtype, dimension names) and provenance attributes, a Gram store's minibatches and attributes, or a similarity result's layers and attributes. Exit status 1 with a one-line error for a missing, incomplete or damaged store.")
    p.add_argument("store", type=Path, metavar="STORE", help="an activation store (results/<experiment>/activations/*.zarr), Gram store (results/<experiment>/grams/*.zarr) or similarity result (results/<experiment>/similarity/*/*.zarr)")
    p.add_argument("--verify", action="store_true", help="also read every row of every layer (a Gram store: every minibatch's Grams) and check its checksum and that it is finite (slower: reads the whole store)")
    p.set_defaults(run=lambda args: inspect(args.store, verify=args.verify))
    p = commands.add_parser("heatmap", help="draw a similarity result as the pipeline's heatmap", description="Draw a CKA similarity result as the pipeline's heatmap (magma, 0–1 colour bar, thinned layer labels, title) into an image file (.png, .pdf, .svg).")
    p.add_argument("result", type=Path, metavar="RESULT", help="a CKA result (results/<experiment>/similarity/cka/<a>__<b>.zarr)")
    p.add_argument("out", type=Path, metavar="OUT", help="the image to write; its suffix picks the format")
    p.add_argument("--title", help="figure title (default: 'CKA: <model a> vs <model b>')")
    p.add_argument("--max-labels", type=int, default=12, help="layer labels per axis at most (default: 12)")
    p.set_defaults(run=lambda args: heatmap(args.result, args.out, title=args.title, max_labels=args.max_labels))
    p = commands.add_parser("targets", help="list the outputs a config will build (needs snakemake)", description="List every output the workflow would build for a config, with Snakemake's plan for it ('update pending', 'no update', ...): a dry run that computes nothing. Run it in the layersim repository. Needs the workflow extra (Snakemake).")
    p.add_argument("--configfile", type=Path, help="the config (default: the embedded config/config.yaml); it replaces the default, it is not merged into it")
    p.add_argument("--snakefile", type=Path, default=Path("Snakefile"), help="the workflow (default: ./Snakefile)")
    p.set_defaults(run=lambda args: targets(args.configfile, args.snakefile))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``layersim`` command; returns its exit status."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except LayersimError as err:
        print(f"layersim {args.command}: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader stopped early (e.g. `| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
