"""The package's shape: no import cycles, and no library call that changes process-wide state."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the layersim modules it imports (at the top or inside functions alike)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from pkg import mod` names a module when pkg.mod is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a name inside a module
                    target = target.rpartition(".")[0]
                if target.startswith("layersim") and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "layersim.engine.stores" in graph and "layersim.store" in graph["layersim.engine.stores"]  # imported inside compare_stores


def test_no_import_cycles_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_library_calls_leave_process_state_as_it_was():
    """Import layersim, run compare_stores and MinibatchCKA: the malloc policy, BLAS thread
    counts and kernels, environment and the set of live threads are the same afterwards."""
    script = textwrap.dedent(
        """
        import ctypes, os, threading, tempfile, warnings
        import numpy as np
        from threadpoolctl import threadpool_info

        libc = ctypes.CDLL("libc.so.6")
        class Mallinfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
        libc.mallinfo2.restype = Mallinfo2
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]

        def mmap_blocks_after_large_free():
            # glibc's dynamic mmap threshold: after freeing a 4 MiB mmapped block, the next
            # 4 MiB malloc comes from the heap (hblks unchanged) unless mallopt fixed the threshold
            p = libc.malloc(4 << 20); libc.free(p)
            before = libc.mallinfo2().hblks
            q = libc.malloc(4 << 20); after = libc.mallinfo2().hblks; libc.free(q)
            return after - before

        def state():
            return {
                "blas": {i["filepath"]: (i["num_threads"], i.get("architecture")) for i in threadpool_info()},
                "env": dict(os.environ),
                # threads of layersim's own (pools, writers); zarr's I/O loop and tqdm's monitor are
                # those libraries' own, started once per process
                "threads": sorted(t.name for t in threading.enumerate() if not t.name.startswith(("asyncio_", "zarr_io", "tqdm_monitor"))),
            }

        mmap_before = mmap_blocks_after_large_free()
        before = state()
        import layersim
        from layersim.engine import MinibatchCKA, compare_stores
        from layersim.store import write_activations
        rng = np.random.default_rng(0)
        with tempfile.TemporaryDirectory() as tmp:
            paths = {}
            for name in "ab":
                batch = {"x": rng.normal(size=(32, 6)).astype(np.float32), "logits": rng.normal(size=(32, 3)).astype(np.float32)}
                paths[name] = write_activations(f"{tmp}/{name}.zarr", [batch], sample_id=np.arange(32), labels=np.zeros(32), attrs={})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compare_stores(paths, [("a", "b")], batch_size=8, passes=2, threads=2, progress=False)
                compare_stores(paths, [("a", "b")], batch_size=8, passes=2, threads=2, cache_mb=0, progress=False)
        acc = MinibatchCKA(threads=2)
        acc.update([rng.normal(size=(16, 5))], [rng.normal(size=(16, 4))])
        acc.compute()
        after = state()
        # libraries loaded since (torch's, scipy's) are new, not changed: compare those loaded before
        after["blas"] = {path: after["blas"][path] for path in before["blas"]}
        for key in before:
            assert before[key] == after[key], (key, before[key], after[key])
        assert mmap_blocks_after_large_free() == mmap_before, "malloc's mmap threshold changed"
        print("unchanged")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "unchanged" in out.stdout, out.stderr[-3000:]


def test_every_rule_that_runs_a_job_has_one_registered():
    """Each rule whose script is the dispatcher names a job function (nothing silently missing),
    and every registered job belongs to a rule."""
    import re

    from layersim.jobs import JOBS, job_function

    rules = {}
    for path in (SRC.parent / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", path.read_text(), re.M):
            if "scripts/job.py" in body:
                rules[name] = path.name
    assert rules, "no rule runs workflow/scripts/job.py"
    assert sorted(set(rules) - set(JOBS)) == [], "rules without a registered job"
    assert sorted(set(JOBS) - set(rules)) == [], "registered jobs without a rule"
    for rule in rules:
        assert callable(job_function(rule))


def test_torch_training_extraction_and_heads_leave_torch_settings_as_they_were(tmp_path):
    """train_torch, extract_torch and the existence proof's heads run with their own thread
    count (and training with deterministic algorithms), then restore the caller's settings."""
    import numpy as np
    import torch

    from layersim.data import load_dataset
    from layersim.experiments.existence import existence_rows
    from layersim.extract.torch import extract_torch
    from layersim.train.torch import train_torch

    data = load_dataset({"name": "digits"})
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    caller_threads = 3 if threads != 3 else 2
    torch.set_num_threads(caller_threads)
    try:
        arch = {"family": "resnet", "depth": 8, "width": 1}
        train_torch(arch, {"epochs": 1}, data, seed=0, checkpoint=tmp_path / "m.pt", history=tmp_path / "h.json", threads=1, progress=False)
        assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (caller_threads, deterministic)
        extract_torch(tmp_path / "m.pt", data.eval, tmp_path / "m.zarr", threads=1, progress=False)
        assert torch.get_num_threads() == caller_threads
        features = np.random.default_rng(0).normal(size=(120, 6))
        existence_rows(features, np.arange(120) % 3, 3, d_ratios=[0.5], steps=5)
        assert torch.get_num_threads() == caller_threads
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
