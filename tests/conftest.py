import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Parsed block files are kept on disk between runs (archc/parsecache.py): the suite keeps its own, never the user's,
# and its subprocesses (the CLI tests) inherit it.
os.environ.setdefault("ARCHC_CACHE_DIR", tempfile.mkdtemp(prefix="archc-test-cache-"))
