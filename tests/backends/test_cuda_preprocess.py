"""appliance/backends/cuda_preprocess.py: the kernel source compiles for the Jetsons' GPUs.

Only nvcc is needed (no GPU): where this host has one, the kernel is compiled for the Nano (sm_53) and
Orin (sm_87) as SourceModule would. Its numbers are checked against the CPU path on a real GPU by
scripts/gpu_check.py (docs/performance.md).
"""
import os
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT

KERNEL_FILE = os.path.join(REPO_ROOT, "appliance", "backends", "letterbox.cu")
JETPACK_NVCC = "/usr/local/cuda/bin/nvcc"
NVCC = shutil.which("nvcc") or (JETPACK_NVCC if os.access(JETPACK_NVCC, os.X_OK) else None)


@pytest.mark.skipif(NVCC is None, reason="no nvcc on this host")
@pytest.mark.parametrize("arch", ["sm_53", "sm_87"])
def test_the_kernel_compiles_for_the_jetsons(tmp_path, arch):
    targets = subprocess.run([NVCC, "--list-gpu-arch"], stdout=subprocess.PIPE, universal_newlines=True).stdout
    if "compute_" + arch[3:] not in targets.split():
        pytest.skip("this nvcc no longer targets {} (CUDA 13 dropped Maxwell; JetPack 4.6's CUDA 10.2 has it)".format(
            arch))
    result = subprocess.run([NVCC, "--cubin", "-arch", arch, "-o", str(tmp_path / "kernel.cubin"), KERNEL_FILE],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert result.returncode == 0, result.stdout
    assert b"letterbox_bgr_minus_mean" in (tmp_path / "kernel.cubin").read_bytes()
