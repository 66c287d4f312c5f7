"""The image's GPU install resolves, and it is the FAISS build that filters on the GPU.

The Dockerfile installs pyproject's `dependencies` and the extras it names
(`.[gpu,s3,gcs]`) with pip on Ubuntu 24.04 (CPython 3.12, glibc 2.39,
x86-64). Here pip's own resolver runs on that same requirement list, as a
dry run for that platform (`pip install --dry-run --report`, wheels only),
and the resolved set is checked:

- it resolves at all: tensorflow[and-cuda]'s nvidia-*-cu12 pins, FAISS's
  CUDA 13 and cuVS pins and the rest agree (a conflict fails here, with
  pip's explanation, instead of in a multi-GB image build);
- exactly one FAISS, faiss-gpu-cuvs >= 1.15.1, the cuVS build: FAISS's
  classic GPU kernels ignore IDSelector filters, only cuVS builds apply them
  (filtered cuVS search is in FAISS 1.14.2; faiss-gpu-cuvs 1.14.1.post1 is a
  community build of 1.14.1 without it, and 1.15.0 lets pip pair it with a
  later cuVS release it does not load with); its cuVS, RAFT and RMM
  libraries are one RAPIDS release; no faiss-cpu, no faiss-gpu-cu12 or
  faiss-gpu, which ship the same module;
- one TensorFlow with its CUDA 12 libraries;
- where two wheels of the set ship the same files (nvidia-nccl-cu12 and
  nvidia-nccl-cu13: nvidia/nccl/), the Dockerfile settles which copy stays
  and deploy/check_gpu_env.py checks it in the image. That script is tested
  here too, on small fake environments.

Nothing is installed and no wheel is downloaded: pip reads each wheel's
metadata only (the `.metadata` files an index serves, PEP 658; with
`--use-feature=fast-deps` pip reads it through HTTP range requests from an
index or proxy that does not serve them), and the test fails if pip logged
a whole-wheel download. About 25 MB of traffic, under 3 MB of disk, 15-40 s.

The package index is pip's own: the index-url of its configuration (files
or PIP_INDEX_URL, as `pip config list` shows it) with the connection
settings that go with it (certificate, trusted hosts, proxy), else pip's
default index. So a machine behind a mirror asks its mirror, and passes or
fails on what the mirror holds. Otherwise pip runs `--isolated`: the rest of
a developer machine's pip configuration (extra indexes, find-links,
constraint files) must not change the answer. The test needs the index:
when it cannot be reached, the test fails; it never skips. The pip here is the test environment's
(CI upgrades it); the Dockerfile upgrades the image's to a pinned release,
since Ubuntu's pip 24.0 misreads pins like `==26.06.*` (checked below).
One caveat of pip's cross-platform mode: environment markers
(`; python_version < ...`) are evaluated for the Python running the tests,
not for 3.12; the requirement lists here have none that differ between them.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
CHECK_SCRIPT = ROOT / "deploy" / "check_gpu_env.py"

# pip's settings that say which index to ask and how to reach it; the rest of its
# configuration is left out (--isolated).
INDEX_SETTINGS = ("index-url", "cert", "client-cert", "trusted-host", "proxy")
# The image: Ubuntu 24.04's python3 and glibc.
PYTHON_VERSION = "3.12"
GLIBC = (2, 39)
RESOLVE_TIMEOUT_S = 540  # under pytest-timeout's 600 s, so pip's own timeout is what fails
# Tests that ask the package index (15-40 s, about 25 MB): the slow tier.
NEEDS_THE_INDEX = pytest.mark.slow

FAISS = "faiss-gpu-cuvs"
FAISS_MIN = Version("1.15.1")
# Distributions that install the module `faiss` (or `tensorflow`): at most one may be in an environment.
FAISS_MODULE_DISTS = re.compile(r"faiss(-.*)?")
TENSORFLOW_MODULE_DISTS = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tf-nightly"}


# ------------------------------------------------------------------ helpers


def image_extras() -> list[str]:
    """The extras the Dockerfile installs, from its `pip install "./[...]"`."""
    text = (ROOT / "Dockerfile").read_text()
    found = re.findall(r'pip install [^\n&]*"\./\[([a-z0-9,]+)\]"', text)
    assert len(set(found)) == 1, f"expected one pip install of ./[extras] in the Dockerfile, found {found}"
    return found[0].split(",")


def image_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in image_extras():
        reqs += project["optional-dependencies"][extra]
    return reqs


def platform_args() -> list[str]:
    # pip does not widen manylinux_2_39 to the older manylinux tags it
    # accepts on that glibc, so every one is named (manylinux2014 pip widens).
    tags = [f"manylinux_{GLIBC[0]}_{minor}_x86_64" for minor in range(GLIBC[1], 16, -1)]
    tags.append("manylinux2014_x86_64")
    args = []
    for tag in tags:
        args += ["--platform", tag]
    return args + ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--only-binary=:all:"]


def configured_index() -> tuple[str, ...]:
    """pip's configured index and how to reach it, as pip options: what `pip config
    list` shows for INDEX_SETTINGS, a PIP_* variable over the install section over
    the global one (pip's order). Empty: pip's default index."""
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                          timeout=60, check=True)
    rank = {":env:": 0, "install": 1, "global": 2}
    found: dict[str, tuple[int, str]] = {}
    for line in proc.stdout.splitlines():
        key, sep, quoted = line.partition("=")
        section, _, name = key.rpartition(".")
        if not sep or name not in INDEX_SETTINGS or section not in rank:
            continue
        if name not in found or rank[section] < found[name][0]:
            found[name] = (rank[section], ast.literal_eval(quoted))
    args = []
    for name in INDEX_SETTINGS:
        if name in found:
            for value in found[name][1].split() if name == "trusted-host" else [found[name][1]]:
                args += ["--" + name, value]
    return tuple(args)


def index_shown() -> str:
    args = configured_index()
    return args[args.index("--index-url") + 1] if "--index-url" in args else "pip's default index"


def pip_resolve(requirements: list[str], workdir: Path,
                retries: int = 3) -> tuple[subprocess.CompletedProcess, dict | None, float]:
    """pip's resolver on `requirements` for the image's platform, on pip's
    configured index; installs nothing."""
    workdir.mkdir(parents=True, exist_ok=True)
    req_file = workdir / "requirements.txt"
    req_file.write_text("\n".join(requirements) + "\n")
    report = workdir / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--disable-pip-version-check",
           "--no-input", "--no-cache-dir", "--progress-bar", "off",
           *configured_index(),
           "--retries", str(retries), "--timeout", "60",
           "--use-feature=fast-deps",
           "--dry-run", "--ignore-installed", "--report", str(report),
           *platform_args(), "-r", str(req_file)]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S, cwd=workdir,
                          env={k: v for k, v in os.environ.items() if not k.startswith("PIP_")})
    seconds = time.monotonic() - started
    data = json.loads(report.read_text()) if proc.returncode == 0 and report.exists() else None
    return proc, data, seconds


def resolve_or_fail(requirements: list[str], workdir: Path, **kw) -> tuple[dict, str, float]:
    proc, report, seconds = pip_resolve(requirements, workdir, **kw)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0 or report is None:
        tail = "\n".join(log.strip().splitlines()[-40:])
        pytest.fail(f"pip could not resolve the image's requirements (exit {proc.returncode}; index "
                    f"{index_shown()}; a registry that cannot be reached fails here "
                    f"too):\n{tail}", pytrace=False)
    return report, log, seconds


def resolved(report: dict) -> dict[str, dict]:
    """Canonical name -> the report's metadata of each distribution pip would install."""
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"] for i in report["install"]}


def faiss_problems(dists: dict[str, dict]) -> list[str]:
    """What is wrong with the FAISS of a resolved set, if anything."""
    faiss = sorted(n for n in dists if FAISS_MODULE_DISTS.fullmatch(n))
    if faiss != [FAISS]:
        return [f"the module faiss must come from {FAISS} alone, the set has {faiss or 'none'}"]
    meta = dists[FAISS]
    out = []
    if Version(meta["version"]) < FAISS_MIN:
        out.append(f"{FAISS} {meta['version']} < {FAISS_MIN}: no filtered cuVS search, or no cuVS pin")
    requires = [Requirement(r) for r in meta.get("requires_dist", [])]
    cuvs = [r.name for r in requires if r.marker is None and canonicalize_name(r.name).startswith("libcuvs-")]
    if not cuvs:
        out.append(f"{FAISS} {meta['version']} does not require a libcuvs wheel: not a cuVS build")
    missing = [c for c in cuvs if canonicalize_name(c) not in dists]
    if missing:
        out.append(f"cuVS libraries {missing} are not in the resolved set")
    # libcuvs, libraft and librmm link to each other: one RAPIDS release (YY.MM).
    rapids = {n: dists[n]["version"] for n in dists if re.fullmatch(r"lib(cuvs|raft|rmm)-cu\d+", n)}
    if len({Version(v).release[:2] for v in rapids.values()}) > 1:
        out.append(f"cuVS, RAFT and RMM from different RAPIDS releases: {rapids}")
    return out


def downloaded_wheels(log: str) -> list[str]:
    """Whole wheels pip logged downloading (`X.whl.metadata` files are fine)."""
    return re.findall(r"Downloading (\S+\.whl) \(", log)


# ------------------------------------------------------------------ the image's set


@pytest.fixture(scope="module")
def image_resolution(tmp_path_factory):
    report, log, seconds = resolve_or_fail(image_requirements(), tmp_path_factory.mktemp("gpu-resolve"))
    print(f"\npip resolved {len(report['install'])} distributions for the image in {seconds:.1f} s")
    return resolved(report), log


def test_requirements_name_the_cuvs_build():
    reqs = {canonicalize_name(Requirement(r).name): Requirement(r) for r in image_requirements()}
    assert image_extras() == ["gpu", "s3", "gcs", "ray"]    # ray: the image also runs the Ray overlay's cluster
    assert FAISS in reqs, f"the gpu extra must install {FAISS}"
    for bad in ("1.14.1.post1", "1.15.0"):
        assert not reqs[FAISS].specifier.contains(bad), f"{FAISS} {bad} must be excluded (see pyproject.toml)"
    assert reqs[FAISS].specifier.contains(str(FAISS_MIN))
    assert "and-cuda" in reqs["tensorflow"].extras
    assert not any(FAISS_MODULE_DISTS.fullmatch(n) for n in reqs if n != FAISS)
    assert not {"tensorflow-cpu", "faiss-cpu"} & set(reqs)


@NEEDS_THE_INDEX
def test_gpu_install_resolves_with_metadata_only(image_resolution):
    dists, log = image_resolution
    assert {FAISS, "tensorflow", "grpcio", "s3fs", "gcsfs"} <= set(dists)
    assert downloaded_wheels(log) == [], "pip downloaded whole wheels to resolve; expected metadata only"


@NEEDS_THE_INDEX
def test_one_faiss_and_it_is_the_cuvs_build(image_resolution):
    dists, _ = image_resolution
    assert faiss_problems(dists) == []


@NEEDS_THE_INDEX
def test_tensorflow_with_cuda12_beside_faiss_with_cuda13(image_resolution):
    dists, _ = image_resolution
    assert [n for n in dists if n in TENSORFLOW_MODULE_DISTS] == ["tensorflow"]
    tf = dists["tensorflow"]
    assert Version(tf["version"]) >= Version("2.20")
    and_cuda = [Requirement(r) for r in tf["requires_dist"] if "and-cuda" in r]
    assert and_cuda, "tensorflow lost its and-cuda extra"
    for r in and_cuda:
        name = canonicalize_name(r.name)
        assert name.endswith("-cu12") and name in dists, r
        assert r.specifier.contains(dists[name]["version"], prereleases=True), (r, dists[name]["version"])
    assert not [n for n in dists if n.endswith("-cu11")]
    faiss_cuda = [Requirement(r) for r in dists[FAISS]["requires_dist"]]
    assert any(canonicalize_name(r.name) == "libcuvs-cu13" for r in faiss_cuda), \
        "faiss-gpu-cuvs is no longer the CUDA 13 build: revisit the Dockerfile's CUDA base and NCCL step"


def test_the_image_upgrades_pip_before_resolving():
    """pip < 24.1 (Ubuntu 24.04 has 24.0) never matches `libcuvs-cu13==26.06.*` to 26.6.0.

    It then falls back to faiss-gpu-cuvs 1.15.0 (or, with the 1.15.1 floor,
    fails): the image installs a pinned current pip into its venv first.
    """
    dockerfile = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    upgrade = re.search(r'/opt/venv/bin/pip install [^&\n]*"pip==([0-9.]+)"', dockerfile)
    assert upgrade, "the Dockerfile must install a pinned pip into /opt/venv"
    assert Version(upgrade.group(1)) >= Version("24.1")
    assert upgrade.start() < dockerfile.index("-r /tmp/requirements.txt")
    from packaging.specifiers import SpecifierSet
    assert SpecifierSet("==26.06.*").contains("26.6.0")  # what pip >= 24.1 (packaging >= 22) does


@NEEDS_THE_INDEX
def test_wheels_sharing_files_are_settled_by_the_dockerfile(image_resolution):
    """nvidia-nccl-cu12 and -cu13 write the same nvidia/nccl/ files; the image keeps the CUDA 13 copy."""
    dists, _ = image_resolution
    nccl = sorted(n for n in dists if n.startswith("nvidia-nccl-"))
    if len(nccl) > 1:
        assert nccl == ["nvidia-nccl-cu12", "nvidia-nccl-cu13"], nccl
        dockerfile = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
        assert re.search(r'pip install [^&]*--force-reinstall "nvidia-nccl-cu13==', dockerfile)
        script = CHECK_SCRIPT.read_text()
        assert re.search(r'"nvidia/nccl/": \(\{"nvidia-nccl-cu12", "nvidia-nccl-cu13"\}, "nvidia-nccl-cu13"\)',
                         script)


# ------------------------------------------------------------------ the checks can fail


def _meta(name: str, version: str, requires: list[str] | None = None) -> dict:
    return {"name": name, "version": version, "requires_dist": requires or []}


def test_faiss_check_flags_wrong_builds():
    good = {FAISS: _meta(FAISS, "1.15.1", ["numpy>=1.25", "libcuvs-cu13==26.06.*"]),
            "libcuvs-cu13": _meta("libcuvs-cu13", "26.6.0")}
    assert faiss_problems(good) == []
    assert "faiss-cpu" in faiss_problems({**good, "faiss-cpu": _meta("faiss-cpu", "1.15.1")})[0]
    assert "faiss-gpu-cu12" in faiss_problems({"faiss-gpu-cu12": _meta("faiss-gpu-cu12", "1.14.1.post1")})[0]
    assert "faiss-gpu" in faiss_problems({"faiss-gpu": _meta("faiss-gpu", "1.15.1")})[0]
    old = {FAISS: _meta(FAISS, "1.14.1.post1", ["libcuvs-cu12==25.10.*"]),
           "libcuvs-cu12": _meta("libcuvs-cu12", "25.10.0")}
    assert any("no filtered cuVS search" in p for p in faiss_problems(old))
    drifted = {FAISS: _meta(FAISS, "1.15.0", ["libcuvs-cu13<27,>=26.06"]),
               "libcuvs-cu13": _meta("libcuvs-cu13", "26.10.0"), "libraft-cu13": _meta("libraft-cu13", "26.10.0"),
               "librmm-cu13": _meta("librmm-cu13", "26.6.0")}
    assert any("< 1.15.1" in p for p in faiss_problems(drifted))
    assert any("different RAPIDS releases" in p for p in faiss_problems(drifted))
    plain = {FAISS: _meta(FAISS, "1.15.1", ["numpy>=1.25", 'libcuvs-cu13; extra == "x"'])}
    assert any("not a cuVS build" in p for p in faiss_problems(plain))
    assert any("not in the resolved set" in p for p in faiss_problems({FAISS: good[FAISS]}))


def test_downloaded_wheels_tells_metadata_from_wheels():
    log = ("  Downloading tensorflow-2.21.0-cp312-cp312-manylinux_2_27_x86_64.whl.metadata (4.5 kB)\n"
           "  Obtaining dependency information from keras 3.15.1\n"
           "  Downloading nvidia_cudnn_cu12-9.28.0.42-py3-none-manylinux_2_27_x86_64.whl (716.2 MB)\n")
    assert downloaded_wheels(log) == ["nvidia_cudnn_cu12-9.28.0.42-py3-none-manylinux_2_27_x86_64.whl"]


@NEEDS_THE_INDEX
def test_resolver_conflict_fails(tmp_path):
    """A conflict between FAISS's cuVS pin and another pin fails with pip's explanation."""
    with pytest.raises(pytest.fail.Exception, match="could not resolve") as failed:
        resolve_or_fail([f"{FAISS}>={FAISS_MIN}", "libcuvs-cu13<26"], tmp_path)
    assert "ResolutionImpossible" in str(failed.value), failed.value


class RecordingIndex:
    """A package index on loopback that knows no package and remembers what was asked."""

    def __init__(self):
        asked = self.asked = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                asked.append(self.path)
                self.send_error(404)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/simple"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_index_is_pips_configured_one(tmp_path, monkeypatch):
    """A machine behind a mirror asks its mirror: pip's configuration names an
    index on loopback, and that index is the one asked (and named on failure)."""
    mirror = RecordingIndex()
    try:
        conf = tmp_path / "pip.conf"
        conf.write_text(f"[global]\nindex-url = {mirror.url}-global\n"
                        f"[install]\nindex-url = {mirror.url}\ntrusted-host = 127.0.0.1 localhost\n")
        monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
        args = configured_index()
        assert args[:2] == ("--index-url", mirror.url)          # the install section over the global one
        assert "--trusted-host" in args and "localhost" in args
        with pytest.raises(pytest.fail.Exception, match=f"index {mirror.url};"):
            resolve_or_fail(["grpcio>=1.66"], tmp_path / "resolve", retries=0)
        assert "/simple/grpcio/" in mirror.asked, mirror.asked
        monkeypatch.setenv("PIP_INDEX_URL", mirror.url + "-env")   # a variable over every file
        assert configured_index()[:2] == ("--index-url", mirror.url + "-env")
    finally:
        mirror.close()


def test_unreachable_registry_fails_loudly(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # pip's configuration names an index there (the only way the tests pick one)
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    with pytest.raises(pytest.fail.Exception, match="could not resolve"):
        resolve_or_fail(["grpcio>=1.66"], tmp_path, retries=0)


# ------------------------------------------------------------------ deploy/check_gpu_env.py


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _fake_dist(site: Path, name: str, version: str, files: dict[str, bytes], write: bool = True) -> None:
    """A minimal installed distribution: dist-info with METADATA and RECORD, and its files."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    rows = [f"{path},{_record_hash(data)},{len(data)}" for path, data in files.items()]
    rows.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    if write:
        for path, data in files.items():
            (site / path).parent.mkdir(parents=True, exist_ok=True)
            (site / path).write_bytes(data)


def _fake_gpu_env(site: Path, nccl_last: str = "nvidia-nccl-cu13", faiss_version: str = "1.15.1",
                  cuvs_marker: bool = True) -> None:
    faiss_files = {"faiss/__init__.py": f"__version__ = '{faiss_version}'\n".encode()}
    if cuvs_marker:
        faiss_files["faiss/_cuvs_build.py"] = b"IS_CUVS_BUILD = True\n"
    _fake_dist(site, FAISS, faiss_version, faiss_files)
    _fake_dist(site, "tensorflow", "2.21.0", {"tensorflow/__init__.py": b""})
    nccl = {"nvidia-nccl-cu12": b"libnccl 2.32.3+cuda12.9", "nvidia-nccl-cu13": b"libnccl 2.32.6+cuda13.5"}
    for name in sorted(nccl, key=lambda n: n == nccl_last):  # the last one writes the file
        _fake_dist(site, name, "2.32.0", {"nvidia/nccl/lib/libnccl.so.2": nccl[name]})


def _run_check(site: Path | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    cmd = [sys.executable, str(CHECK_SCRIPT)]
    if site is not None:  # only the fake environment (and the standard library) on sys.path
        cmd[1:1] = ["-S"]
        env["PYTHONPATH"] = str(site)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def test_check_gpu_env_accepts_the_expected_install(tmp_path):
    _fake_gpu_env(tmp_path)
    proc = _run_check(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "faiss-gpu-cuvs 1.15.1 (cuVS)" in proc.stdout


@pytest.mark.parametrize("case, expected", [
    ("nccl-cu12-last", "nvidia/nccl/ (e.g. nvidia/nccl/lib/libnccl.so.2) are not nvidia-nccl-cu13's"),
    ("faiss-cpu-beside", "found: ['faiss-cpu', 'faiss-gpu-cuvs']"),
    ("old-faiss", "1.15.0 is older than 1.15.1"),
    ("no-cuvs-marker", "does not import as a cuVS build"),
    ("tensorflow-cpu-beside", "found: ['tensorflow', 'tensorflow-cpu']"),
    ("other-overlap", "is written by ['a-lib', 'b-lib'] with different contents"),
])
def test_check_gpu_env_refuses(tmp_path, case, expected):
    _fake_gpu_env(tmp_path, nccl_last="nvidia-nccl-cu12" if case == "nccl-cu12-last" else "nvidia-nccl-cu13",
                  faiss_version="1.15.0" if case == "old-faiss" else "1.15.1",
                  cuvs_marker=case != "no-cuvs-marker")
    if case == "faiss-cpu-beside":
        _fake_dist(tmp_path, "faiss-cpu", "1.15.1", {"faiss/__init__.py": b"# cpu\n"}, write=False)
    if case == "tensorflow-cpu-beside":
        _fake_dist(tmp_path, "tensorflow-cpu", "2.21.0", {"tensorflow/__init__.py": b""}, write=False)
    if case == "other-overlap":
        _fake_dist(tmp_path, "a-lib", "1.0", {"shared/lib.so": b"a"})
        _fake_dist(tmp_path, "b-lib", "1.0", {"shared/lib.so": b"b"})
    proc = _run_check(tmp_path)
    assert proc.returncode == 1
    assert expected in proc.stderr, proc.stderr


def test_check_gpu_env_refuses_the_cpu_test_environment():
    """The environment running these tests has faiss-cpu (the `server` extra): not a GPU install."""
    proc = _run_check(None)
    assert proc.returncode == 1
    assert "faiss" in proc.stderr and FAISS in proc.stderr, proc.stderr
