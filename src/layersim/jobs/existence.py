"""Jobs of the thesis' existence proof (Table 4.1)."""

from __future__ import annotations

from layersim.experiments.common import markdown_table
from layersim.experiments.existence import existence_rows
from layersim.io import write_csv, write_text
from layersim.jobs import job, log
from layersim.plots import existence_figure
from layersim.store import ActivationStore


@job
def existence_proof(smk) -> None:
    """:func:`layersim.experiments.existence.existence_rows` on the base's store → CSV, Markdown, figure."""
    p = smk.params
    store = ActivationStore(smk.input.store)
    features, labels = store.read(p.layer), store.labels
    rows = existence_rows(features, labels, int(labels.max()) + 1, d_ratios=list(p.d_ratios), flip_fraction=p.flip_fraction, head_fraction=p.head_fraction, steps=p.head_steps, seed=p.seed)
    for r in rows:
        log.info("d=%.2f CKA(features)=%.3f CKA(masked)=%.3f JSD=%.3f rank=%.3f acc1=%.3f acc2=%.3f", r["d_ratio"], r["cka_features"], r["cka_masked"], r["jsd_bits"], r["rank_correlation"], r["accuracy_net1"], r["accuracy_net2"])
    write_csv(rows, smk.output.table, comments=[f"existence proof (thesis Table 4.1): base {store.name}, layer {p.layer}, flip_fraction {p.flip_fraction}"])
    write_text(smk.output.markdown, markdown_table(rows, ["d_ratio", "cka_features", "cca_features", "cka_masked", "cca_masked", "jsd_bits", "rank_correlation", "accuracy_net1", "accuracy_net2"]))
    existence_figure(rows, smk.output.figure, title=f"Existence proof: frozen {store.name} ({p.layer}), Net2 with {p.flip_fraction:.0%} labels flipped")
