"""Every environment variable the code reads is documented in
docs/configuration.md, and the Kubernetes manifests under deploy/ set only
documented variables and probe real routes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.environment_reads import ROOT, environment_reads

CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


def documented(name: str) -> bool:
    return f"`{name}`" in CONFIGURATION


def test_the_code_reads_the_variables_we_know_about():
    reads = environment_reads()
    # The scan finds the readers it must: typed settings helpers, os.environ
    # lookups and names held in constants (database_env.UPSTREAM_HOST).
    assert {"DATABASE_URL", "LOG_FORMAT", "SKA_DATAPRODUCT_API_POSTGRESQL_HOST"} <= set(reads)
    assert "PROMETHEUS_MULTIPROC_DIR" in reads


def test_every_variable_the_code_reads_is_documented():
    missing = {
        name: sorted(files) for name, files in environment_reads().items() if not documented(name)
    }
    assert not missing, f"add these to docs/configuration.md: {missing}"


def documents() -> list[tuple[Path, dict]]:
    return [
        (path, doc) for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc
    ]


def containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def test_the_manifests_parse_and_cover_web_worker_and_volume():
    kinds = {(doc["kind"], doc.get("metadata", {}).get("name")) for _, doc in documents()}
    assert {("Deployment", "dpd-web"), ("Deployment", "dpd-worker")} <= kinds
    assert ("PersistentVolumeClaim", "dpd-shared-volume") in kinds
    listed = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "kustomization.yaml").read_text())
    for resource in listed["resources"]:
        assert (ROOT / "deploy" / "kubernetes" / resource).is_file(), resource


def deployment(name: str) -> dict:
    return next(
        doc
        for _, doc in documents()
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == name
    )


def test_the_web_pods_run_the_web_side_and_the_worker_the_worker_side():
    (web,) = containers(deployment("dpd-web"))
    (worker,) = containers(deployment("dpd-worker"))
    assert web["args"][0] == "runweb" and worker["args"][0] == "runworker"
    assert deployment("dpd-worker")["spec"]["replicas"] == 1
    assert deployment("dpd-web")["spec"]["replicas"] > 1


def test_the_shared_volume_is_read_only_for_the_web_pods():
    spec = deployment("dpd-web")["spec"]["template"]["spec"]
    claims = {v["name"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
    (web,) = spec["containers"]
    mounts = [m for m in web["volumeMounts"] if m["name"] in claims]
    assert mounts and all(m.get("readOnly") for m in mounts)
    configmap = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap")
    assert {m["mountPath"] for m in mounts} == {configmap["data"]["PERSISTENT_STORAGE_PATH"]}


def set_variables() -> set[str]:
    names = set()
    for _, doc in documents():
        if doc["kind"] in ("ConfigMap", "Secret"):
            names |= set(doc.get("data", {})) | set(doc.get("stringData", {}))
        for container in containers(doc):
            names |= {entry["name"] for entry in container.get("env", [])}
    return names


def test_every_variable_the_manifests_set_is_documented():
    names = set_variables()
    assert {"DATABASE_URL", "DPD_NUM_PROXIES", "DPD_PROXY_ADDRESSES", "SDP_ETCD_HOST"} <= names
    assert not {name for name in names if not documented(name)}


def probes() -> list[tuple[str, str, dict]]:
    found = []
    for _, doc in documents():
        for container in containers(doc):
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                if kind in container:
                    found.append((container["name"], kind, container[kind]))
    return found


def test_the_web_pods_are_probed_on_healthz_and_readyz():
    paths = {(name, kind): probe["httpGet"]["path"] for name, kind, probe in probes()}
    assert paths[("web", "livenessProbe")] == "/healthz"
    assert paths[("web", "readinessProbe")] == "/readyz"


@pytest.mark.django_db
def test_every_probe_points_at_a_real_route(client):
    from tests.test_ops_endpoints import wsgi_get

    for name, kind, probe in probes():
        http = probe["httpGet"]
        (container,) = [c for _, doc in documents() for c in containers(doc) if c["name"] == name]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert http["port"] in ports or http["port"] in ports.values(), (name, kind)
        if http["path"] == "/healthz":  # answered before Django (dpd.wsgi)
            status = int(wsgi_get(http["path"], HTTP_HOST="10.1.2.3:8000")[0].split()[0])
        else:
            status = client.get(http["path"], HTTP_HOST="10.1.2.3:8000").status_code
        assert status == 200, (name, kind, http["path"])
