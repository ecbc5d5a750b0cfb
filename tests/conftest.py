"""Test set-up: eight simulated CPU devices so that sharding tests run in-process, and one JAX
compilation cache per test run.

The cache (JAX's persistent compilation cache, on disk) is shared by the xdist workers of one run and
by the `prm-jax` processes tests start (they inherit the environment): many tests compile the same
tiny programs, and a cache hit loads the same executable a compile would build, so results do not
change. Each run starts with an empty cache in the temp folder (what CI on a clean clone gets) and
removes it at the end; a JAX_COMPILATION_CACHE_DIR already set is used and kept as it is.
"""

import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# 0.2 s rather than JAX's default of 1 s, so that the shorter compiles of the tiny test models are shared too.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
# Set here in the controller (or a run without xdist); its xdist workers inherit the environment.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="prm-jax-tests-jax-cache-")


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
