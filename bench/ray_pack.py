"""Time Ray 2.60's own packaging of a directory: get_uri_for_directory + create_package."""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ray._private.runtime_env.packaging import create_package, get_uri_for_directory

d = sys.argv[1]
t0 = time.perf_counter()
uri = get_uri_for_directory(d, include_gitignore=True)
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "pkg.zip")
    create_package(d, Path(out), include_gitignore=True)
    t2 = time.perf_counter()
    size = os.path.getsize(out)
print(json.dumps({"hash_s": t1 - t0, "zip_s": t2 - t1, "total_s": t2 - t0, "zip_bytes": size, "uri": uri}))
