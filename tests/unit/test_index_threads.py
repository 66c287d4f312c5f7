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


SEARCH_THREAD = """
import json, threading, faiss, numpy as np
from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.index.backend import limit_cpu_threads
limit_cpu_threads(1)
x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
index = ExampleIndex.build(x, [str(i) for i in range(64)], None, None,
                           SearchConfig(dimensions=4, distance="SQUARED_L2_DISTANCE", algorithm="brute_force"))
seen = []
def search():
    before = faiss.omp_get_max_threads()
    index.search(x[:2], 3)
    seen.append([before, faiss.omp_get_max_threads()])
t = threading.Thread(target=search); t.start(); t.join()
limit_cpu_threads(0)                       # back to the defaults, in every thread that searches again
t = threading.Thread(target=search); t.start(); t.join()
print(json.dumps(seen))
"""


def test_the_limit_reaches_threads_that_search():
    # OpenMP keeps its thread count per thread: a gRPC thread starts at the default (2
    # here) and takes the limit on its first search; 0 restores the default.
    assert _run(SEARCH_THREAD) == [[2, 1], [2, 2]]
