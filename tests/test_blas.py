"""OpenBLAS's kernels for the float32 Grams (layersim.blas), chosen before numpy loads OpenBLAS."""

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from layersim.blas import gram_coretype


def cpuinfo(vendor="AuthenticAMD", family=25, flags="fpu sse2 avx avx2 fma avx512f avx512bw") -> str:
    """A /proc/cpuinfo of two processors (only the first block is read)."""
    block = f"processor\t: {{}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n"
    return block.format(0) + "\n" + block.format(1).replace("AuthenticAMD", "GenuineIntel")


@pytest.mark.parametrize(
    "info, expected",
    [
        (cpuinfo(), "Haswell"),  # Zen 4
        (cpuinfo(flags="fpu sse2 avx avx2 fma"), None),  # Zen 3: no AVX-512, OpenBLAS picks Zen/Haswell itself
        (cpuinfo(vendor="GenuineIntel", family=6), None),  # Intel with AVX-512: SkylakeX is right there
        (cpuinfo(family=26), None),  # Zen 5 (full-width AVX-512): not measured, OpenBLAS's pick stays
        ("", None),
    ],
)
def test_the_haswell_kernels_are_chosen_on_zen4_only(info, expected):
    assert gram_coretype(info) == expected


needs_avx2 = pytest.mark.skipif(
    platform.machine() != "x86_64" or "avx2" not in open("/proc/cpuinfo").read(), reason="OpenBLAS's Haswell kernels need an x86-64 CPU with AVX2"
)


def run_python(code: str, env_extra: dict | None = None) -> dict:
    """``code`` in a fresh interpreter (no OPENBLAS_CORETYPE unless given); its last line of
    output, as JSON."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"} | (env_extra or {})
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# numpy's OpenBLAS kernels, as threadpoolctl reads them (an expression, for the scripts below)
KERNELS = 'sorted({i["architecture"] for i in __import__("threadpoolctl").threadpool_info() if i["internal_api"] == "openblas" and "numpy" in i["filepath"]})'


@needs_avx2
def test_prefer_gram_kernels_sets_the_core_type_numpy_then_loads(tmp_path):
    """On a Zen 4 (a cpuinfo file saying so), numpy's OpenBLAS loads its Haswell kernels after
    the call; float64, a user's own setting, or numpy already imported leave everything as is."""
    (tmp_path / "zen4").write_text(cpuinfo())
    path = json.dumps(str(tmp_path / "zen4"))
    for dtype, env, import_first, expected_set, expected_env in [
        ("float32", {}, False, "Haswell", "Haswell"),
        ("float64", {}, False, None, None),
        ("float32", {"OPENBLAS_CORETYPE": "Sandybridge"}, False, None, "Sandybridge"),
        ("float32", {}, True, None, None),
    ]:
        result = run_python(
            f"""
            import json, os
            {"import numpy" if import_first else ""}
            from layersim.blas import prefer_gram_kernels
            chosen = prefer_gram_kernels({dtype!r}, cpuinfo_path={path})
            import numpy
            print(json.dumps({{"chosen": chosen, "env": os.environ.get("OPENBLAS_CORETYPE"), "kernels": {KERNELS}}}))
            """,
            env,
        )
        assert result["chosen"] == expected_set and result["env"] == expected_env, (dtype, env, import_first)
        if expected_env:
            assert result["kernels"] == [expected_env]


@needs_avx2
def test_the_similarity_script_chooses_before_anything_loads_numpy(repo):
    """``workflow/scripts/similarity.py`` run as Snakemake runs it (its ``snakemake`` object
    given), on a CPU taken for a Zen 4: the rule's code finds numpy's OpenBLAS on the Haswell
    kernels, so nothing the script imports before the choice loaded numpy."""
    result = run_python(
        f"""
        import json, runpy, sys, types
        import layersim.blas
        layersim.blas.gram_coretype = lambda cpuinfo: "Haswell"  # as on a Zen 4
        seen = {{}}
        def similarity(smk):
            import numpy
            seen["kernels"] = {KERNELS}
        rules = types.ModuleType("layersim.rules")
        rules.similarity = similarity
        sys.modules["layersim.rules"] = rules
        smk = types.SimpleNamespace(params=types.SimpleNamespace(dtype="float32"))
        runpy.run_path({str(repo / "workflow" / "scripts" / "similarity.py")!r}, init_globals={{"snakemake": smk}})
        print(json.dumps(seen))
        """
    )
    assert result == {"kernels": ["Haswell"]}
