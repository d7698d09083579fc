# layersim: do these neural networks (and their layers) learn the same things?
# train → extract activations (Zarr) → minibatch CKA (Dask) → figures.  See README.md.

from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless --configfile names a complete config of its own
# (e.g. config/experiments/*.yaml): configs are not merged, so no default model leaks in.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/similarity.smk"
include: "workflow/rules/functional.smk"
include: "workflow/rules/figures.smk"
# paper experiments: one rule file each, config papers.<name>, jobs layersim.jobs.<name>
include: "workflow/rules/nguyen.smk"
include: "workflow/rules/kornblith.smk"
include: "workflow/rules/johnson.smk"
include: "workflow/rules/existence.smk"
include: "workflow/rules/checkpoints.smk"
include: "workflow/rules/ding.smk"
include: "workflow/rules/architectures.smk"
include: "workflow/rules/representation_sets.smk"
include: "workflow/rules/minigrid.smk"


rule all:
    input:
        all_targets(),
    default_target: True
