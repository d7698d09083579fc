# Every rule runs this script: layersim.jobs.run calls the job function registered under the
# rule's name (layersim.jobs.JOBS), so all logic lives, and is tested, in the package.
from layersim.jobs import run

run(snakemake)  # noqa: F821 (snakemake is injected by the script directive)
