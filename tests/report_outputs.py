"""Print, as JSON, every output a config's ``snakemake --report`` would show, from its job DAG.

``python report_outputs.py WORKDIR CONFIG [CONFIG ...]`` builds each config's DAG of jobs with
Snakemake's Python API (nothing runs; the report's files need not exist) and prints
``{config: [[rule, path, category, subcategory], ...]}`` for every output wrapped in ``report()``,
categories expanded with the job's wildcards as ``snakemake --report`` expands them. Run in a
subprocess (the API changes the working directory and loads the workflow into the process).
"""

import asyncio
import json
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.io import get_flag_value, is_flagged
from snakemake.report import expand_report_argument
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

REPO = Path(__file__).resolve().parents[1]


def report_outputs(workdir: Path, configfile: Path) -> list[list[str | None]]:
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[configfile]),
            snakefile=REPO / "Snakefile",
            workdir=workdir,
        )
        dag_api = workflow_api.dag(DAGSettings(forceall=True))
        workflow = dag_api.workflow_api._workflow  # the API has no public job list
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        workflow._build_dag()
        rows = []
        for job in workflow.dag.jobs:
            for f in job.output:
                if is_flagged(f, "report"):
                    entry = get_flag_value(f, "report")
                    category = asyncio.run(expand_report_argument(entry.category, job.wildcards, job)) if entry.category else None
                    subcategory = asyncio.run(expand_report_argument(entry.subcategory, job.wildcards, job)) if entry.subcategory else None
                    rows.append([job.rule.name, str(f), category, subcategory])
        return sorted(rows)


if __name__ == "__main__":
    workdir = Path(sys.argv[1]).resolve()
    print(json.dumps({config: report_outputs(workdir, Path(config).resolve()) for config in sys.argv[2:]}))
