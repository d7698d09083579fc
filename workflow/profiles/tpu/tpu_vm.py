"""Run one Snakemake job on a Cloud TPU VM through `gcloud` (used by submit.py, status.py, cancel.py).

submit: create a queued resource (a TPU VM) or reuse a named VM, then start a detached runner
that waits until the VM is ACTIVE, copies the jobscript over (`tpu-vm scp`), runs it
(`tpu-vm ssh --command`), records its exit status and deletes the queued resource it
created. The job id printed to Snakemake is the queued-resource / node name.
status: running | success | failed from the runner's state files.
cancel: stop the runner (by its pid) and delete the queued resource.

Settings (environment): LAYERSIM_TPU_PROJECT, LAYERSIM_TPU_ZONE (required),
LAYERSIM_TPU_TYPE (accelerator type, default v5litepod-8), LAYERSIM_TPU_RUNTIME (TPU VM runtime
version, default v2-alpha-tpuv5-lite), LAYERSIM_TPU_SPOT=1 (spot capacity), LAYERSIM_TPU_VM
(reuse this existing TPU VM: nothing is created or deleted), LAYERSIM_TPU_SETUP (shell run on
the VM before the job, e.g. activating an environment that has layersim and snakemake).
A rule may set its own type with the resource `tpu_type`.

Not run against Google Cloud: tested only with a stand-in gcloud (tests/test_tpu_profile.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

# Accelerator types of `gcloud compute tpus queued-resources create --accelerator-type`.
TPU_TYPES = {
    "v2": {8, 32, 128, 256, 512},
    "v3": {8, 32, 64, 128, 256, 512, 1024, 2048},
    "v4": {8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096},
    "v5litepod": {1, 4, 8, 16, 32, 64, 128, 256},
    "v5p": {8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 12288},
    "v6e": {1, 4, 8, 16, 32, 64, 128, 256},
}
DEFAULT_TYPE = "v5litepod-8"
DEFAULT_RUNTIME = "v2-alpha-tpuv5-lite"
STATE = Path(".snakemake") / "tpu"


class SettingError(Exception):
    pass


def check_tpu_type(name: str) -> str:
    m = re.fullmatch(r"(v2|v3|v4|v5litepod|v5p|v6e)-(\d+)", name or "")
    if not m or int(m.group(2)) not in TPU_TYPES[m.group(1)]:
        known = ", ".join(f"{g}-{{{','.join(map(str, sorted(n)))}}}" for g, n in TPU_TYPES.items())
        raise SettingError(f"TPU type {name!r} is not recognised (LAYERSIM_TPU_TYPE or resource tpu_type); known: {known}")
    return name


def settings(resources: dict | None = None) -> dict:
    env = os.environ
    missing = [k for k in ("LAYERSIM_TPU_PROJECT", "LAYERSIM_TPU_ZONE") if not env.get(k)]
    if missing:
        raise SettingError(f"set {' and '.join(missing)} (the Google Cloud project and zone of the TPU VMs)")
    tpu_type = env.get("LAYERSIM_TPU_TYPE") or DEFAULT_TYPE
    if (resources or {}).get("tpu_type"):  # the profile's default resource, or a rule's own
        tpu_type = str(resources["tpu_type"])
    return {
        "project": env["LAYERSIM_TPU_PROJECT"],
        "zone": env["LAYERSIM_TPU_ZONE"],
        "type": check_tpu_type(tpu_type),
        "runtime": env.get("LAYERSIM_TPU_RUNTIME") or DEFAULT_RUNTIME,
        "spot": env.get("LAYERSIM_TPU_SPOT", "") not in ("", "0", "false"),
        "vm": env.get("LAYERSIM_TPU_VM") or None,
        "setup": env.get("LAYERSIM_TPU_SETUP") or "",
    }


def job_properties(jobscript: Path) -> dict:
    """The `# properties = {...}` header Snakemake writes into every jobscript."""
    for line in jobscript.read_text().splitlines():
        if line.startswith("# properties = "):
            return json.loads(line[len("# properties = "):])
    return {}


def gcloud(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["gcloud", *args], check=check, text=True, **kw)


def where(s: dict) -> list[str]:
    return [f"--project={s['project']}", f"--zone={s['zone']}"]


def submit(jobscript: str) -> int:
    jobscript = Path(jobscript).resolve()
    props = job_properties(jobscript)
    try:
        s = settings(props.get("resources"))
    except SettingError as e:
        print(f"layersim TPU profile: {e}", file=sys.stderr)
        return 2
    rule = re.sub(r"[^a-z0-9]", "-", str(props.get("rule", "job")).lower())
    name = s["vm"] or f"layersim-{rule}-{props.get('jobid', 0)}-{uuid.uuid4().hex[:8]}"
    state = STATE / (name if not s["vm"] else f"{name}-{uuid.uuid4().hex[:8]}")
    state.mkdir(parents=True, exist_ok=True)
    (state / "settings.json").write_text(json.dumps({**s, "name": name, "jobscript": str(jobscript), "created": not s["vm"]}))
    if not s["vm"]:
        create = ["compute", "tpus", "queued-resources", "create", name, f"--node-id={name}", *where(s),
                  f"--accelerator-type={s['type']}", f"--runtime-version={s['runtime']}"]
        if s["spot"]:
            create.append("--spot")
        result = gcloud(*create, check=False, capture_output=True)
        if result.returncode != 0:
            print(f"layersim TPU profile: queued-resources create failed: {result.stderr.strip()}", file=sys.stderr)
            return 1
    log = open(state / "runner.log", "ab")
    runner = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "run", str(state)],
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    (state / "pid").write_text(str(runner.pid))
    print(state.name)
    return 0


def run(state: str) -> int:
    """The detached runner of one job (see module docstring)."""
    state = Path(state)
    s = json.loads((state / "settings.json").read_text())
    name = s["name"]
    status = 1
    try:
        if s["created"]:
            while True:  # a queued resource is ACTIVE once its TPU VM is up
                out = gcloud("compute", "tpus", "queued-resources", "describe", name, *where(s),
                             "--format=value(state.state)", capture_output=True).stdout.strip()
                if out == "ACTIVE":
                    break
                if out in ("FAILED", "SUSPENDED"):
                    raise RuntimeError(f"queued resource {name} is {out}")
                time.sleep(10)
        remote = f"/tmp/layersim-{state.name}.sh"
        gcloud("compute", "tpus", "tpu-vm", "scp", s["jobscript"], f"{name}:{remote}", *where(s), "--worker=0")
        command = f"{s['setup'] + ' && ' if s['setup'] else ''}bash {shlex.quote(remote)}"
        status = gcloud("compute", "tpus", "tpu-vm", "ssh", name, *where(s), "--worker=0", f"--command={command}", check=False).returncode
    except Exception as e:  # noqa: BLE001 — any failure is the job's failure
        print(f"layersim TPU runner: {e}", file=sys.stderr)
        status = 1
    finally:
        (state / "exit").write_text(str(status))
        if s["created"]:
            gcloud("compute", "tpus", "queued-resources", "delete", name, *where(s), "--force", "--quiet", check=False)
    return status


def status(job_id: str) -> str:
    state = STATE / job_id
    if (state / "exit").exists():
        return "success" if (state / "exit").read_text().strip() == "0" else "failed"
    try:
        os.kill(int((state / "pid").read_text()), 0)
    except (OSError, ValueError):
        # the runner is gone without an exit status (killed, or the machine restarted)
        return "success" if (state / "exit").exists() and (state / "exit").read_text().strip() == "0" else "failed"
    return "running"


def cancel(job_ids: list[str]) -> int:
    for job_id in job_ids:
        state = STATE / job_id
        try:
            os.killpg(int((state / "pid").read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        s = json.loads((state / "settings.json").read_text())
        if s["created"]:
            gcloud("compute", "tpus", "queued-resources", "delete", s["name"], *where(s), "--force", "--quiet", check=False)
    return 0


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "run":
        sys.exit(run(args[0]))
    if cmd == "submit":
        sys.exit(submit(args[-1]))
    if cmd == "status":
        print(status(args[0]))
        sys.exit(0)
    if cmd == "cancel":
        sys.exit(cancel(args))
    sys.exit(f"unknown command {cmd}")
