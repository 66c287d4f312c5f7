"""Process-wide state one test may set and the next must not inherit."""
import faiss
import pytest

from explaind.server.index import backend


@pytest.fixture(autouse=True)
def serving_cpu_plan_undone():
    """An App built in-process applies the serving thread plan (serving/cpu.py):
    OpenMP and BLAS limits, batches through BLAS. Undone after each test."""
    threshold = faiss.cvar.distance_compute_blas_threshold
    yield
    if backend._search_threads:
        backend.limit_cpu_threads(0)
    faiss.cvar.distance_compute_blas_threshold = threshold
