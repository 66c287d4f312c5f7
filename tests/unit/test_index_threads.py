"""--index-threads caps the cores one CPU search spreads over."""
import subprocess
import sys

CHILD = """
import json, faiss, numpy, threadpoolctl
from explaind.server.config import resolve
from explaind.server.index.backend import limit_cpu_threads
limit_cpu_threads(resolve(environ={"EXPLAIND_INDEX_THREADS": "1"}).index_threads)
print(json.dumps([faiss.omp_get_max_threads(),
                  sorted({p["num_threads"] for p in threadpoolctl.threadpool_info()})]))
"""


def _run(code: str) -> list:
    import json
    out = subprocess.check_output([sys.executable, "-c", code], env={"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2",
                                                                      "PATH": "/usr/bin:/bin"})
    return json.loads(out.decode().strip().splitlines()[-1])


def test_index_threads_limits_faiss_and_blas_pools():
    # A fresh process: the limit is process-wide and must not leak into other tests.
    assert _run(CHILD.replace('"1"', '"0"')) == [2, [2]]     # 0 keeps what the process had
    assert _run(CHILD) == [1, [1]]
