import ctypes
import gc
import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Parsed block files are kept on disk between runs (archc/parsecache.py): the suite keeps its own, never the user's,
# and its subprocesses (the CLI tests) inherit it.
os.environ.setdefault("ARCHC_CACHE_DIR", tempfile.mkdtemp(prefix="archc-test-cache-"))


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc: its allocator's settings do not apply
        return None


LIBC = _libc()
if LIBC is not None:
    # The suite runs PyTorch, TensorFlow and ONNX Runtime in one process, model after model. glibc's defaults keep
    # what they free: blocks under a threshold that rises to 32 MB once big blocks are freed stay in the heap, and
    # each of TensorFlow's threads gets its own arena. Measured on test_load_weights.py + test_onnx.py: the memory
    # held between tests 1.1 GB -> 0.74 GB, the peak 2.31 -> 2.22 GB. Set before any framework starts a thread.
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
    LIBC.mallopt(M_ARENA_MAX, 2)
    LIBC.mallopt(M_MMAP_THRESHOLD, 1 << 20)  # a fixed 1 MiB: every tensor's buffer is mapped, and unmapped when freed
    LIBC.mallopt(M_TRIM_THRESHOLD, 1 << 20)


@pytest.fixture(autouse=True, scope="module")
def _memory_back_after_each_file():
    """Models a test file built (often in cycles: Keras layers, fx graphs) are collected before the next file's,
    and the freed heap is given back, so the suite's peak is the largest file's, not their sum."""
    yield
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session(free_memory=False)
    if any(name in sys.modules for name in ("torch", "keras", "onnx")):
        gc.collect()
    if LIBC is not None:
        LIBC.malloc_trim(0)
