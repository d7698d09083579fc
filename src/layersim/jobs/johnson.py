"""Jobs of Johnson (2019), Example 3.1: subspace match against CKA/CCA."""

from __future__ import annotations

from layersim.experiments.johnson import johnson_rows, verdict
from layersim.io import write_csv, write_text
from layersim.jobs import job, log


@job
def johnson_table(smk) -> None:
    """:func:`layersim.experiments.johnson.johnson_rows` → CSV + Markdown."""
    rows = johnson_rows(tuple(smk.params.epsilons))
    write_csv(rows, smk.output.table, comments=["Johnson (2019) Example 3.1: hidden layers of two ReLU networks, y = W2 ReLU(W1 x)", "see layersim.experiments.johnson and docs/metrics.md"])
    lines = ["| construction | inputs | subspace match (ε=0) | linear CKA | CCA mean ρ | Procrustes | same function? | verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cca = "undefined (n < 3)" if r["cca_mean_rho"] != r["cca_mean_rho"] else f"{r['cca_mean_rho']:.3f}"
        lines.append(f"| {r['construction']} | {r['n_inputs']} | {r['subspace_match_eps0']:.2f} ({r['match_sets_eps0']}) | {r['linear_cka']:.3f} | {cca} | {r['procrustes']:.3g} | {'yes' if r['same_function'] else 'no'} | {verdict(r)} |")
        log.info(verdict(r))
    write_text(smk.output.markdown, "\n".join(lines) + "\n")
