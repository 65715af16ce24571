"""The Helm chart (deploy/helm/pro-portal): linted and rendered by Helm's own engine, every manifest
validated against the Kubernetes API schemas, offline.

No helm binary is used: helm-python-sdk carries Helm's Go SDK (v4) as a shared library, whose
lint and render are what ``helm lint`` and ``helm template`` run. kubernetes-validate holds the
OpenAPI schemas of each Kubernetes release and validates strictly (no unknown field). Both are
pinned in requirements-chart.txt. The manifests are validated for the oldest Kubernetes the chart
supports (Chart.yaml's kubeVersion) and the newest the validator knows; the custom resources
(KEDA's ScaledObject, prometheus-operator's ServiceMonitor), whose schemas are not Kubernetes',
are checked by hand here.

The chart is rendered with each values file of its ci/ folder (a minimal site, a full site with
S3, an ingress and an HPA, and the kubernetes executor with KEDA), and the parts the issue asks
for are checked on the result: the four roles, their probes, secrets as files, the executor's
RBAC, the network policies that shut solve pods away from the database and Redis, the
disruption budgets and the autoscaling of the solves role. The exec probe of the roles without
a web server is run against the test database.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "pro-portal"
RELEASE, NAMESPACE = "pro", "pro"
FULLNAME = "pro-pro-portal"
# Chart.yaml's kubeVersion floor, and the newest release kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# Custom resources: no Kubernetes schema; checked by hand.
CUSTOM_GROUPS = {"keda.sh", "monitoring.coreos.com"}
ROLES = {"web": "web", "sessions": "sessions", "solves": "solves", "backend": "none"}


def values_file(name: str) -> dict[str, Any]:
    return helm.values_from_yaml((CHART / "ci" / f"{name}-values.yaml").read_text())


def render(values: dict[str, Any], chart: Path = CHART) -> dict[str, str]:
    """``helm template``: the chart's files, rendered as ``helm install`` would, by template path."""
    with helm.Chart.load(str(chart)) as loaded:
        return loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def validate(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(deployment)["env"]}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: manifests(render(values_file(name))) for name in ("minimal", "site", "kubernetes-executor")}


# ---------------------------------------------------------------- helm lint, helm template, schemas


def test_helm_lint_finds_nothing_wrong():
    for name in ("minimal", "site", "kubernetes-executor"):
        report = helm.lint(str(CHART), values_file(name), strict=True, kube_version=f"v{KUBERNETES_VERSIONS[0]}")
        assert report["total_charts_linted"] == 1
        problems = [message for message in report["messages"] if message["severity"] >= 2]
        assert not problems and not report["errors"], (name, problems, report["errors"])


def test_helm_lint_reports_a_broken_template(tmp_path):
    broken = tmp_path / "pro-portal"
    shutil.copytree(CHART, broken)
    service = broken / "templates" / "service.yaml"
    service.write_text(service.read_text().replace("{{- end }}", "", 1))
    report = helm.lint(str(broken), values_file("minimal"), strict=True)
    assert [m for m in report["messages"] if m["severity"] == 3], report


@pytest.mark.parametrize("values", ["minimal", "site", "kubernetes-executor"])
def test_every_manifest_is_valid_for_kubernetes(rendered, values):
    docs = rendered[values]
    standard = [doc for doc in docs if doc["apiVersion"].split("/")[0] not in CUSTOM_GROUPS]
    assert len(standard) >= 15
    for version in KUBERNETES_VERSIONS:
        for doc in standard:
            try:
                validate(doc, version)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(
                    f"{values}: {doc['kind']} {doc['metadata']['name']} on {version}: {exc.message} at {list(exc.path)}"
                )


def test_the_validator_refuses_what_kubernetes_would():
    """The check above can fail: a field Kubernetes does not know, a wrong type, a missing one."""
    web = by_kind(manifests(render(values_file("minimal"))), "Deployment")[f"{FULLNAME}-web"]
    validate(web, KUBERNETES_VERSIONS[-1])
    unknown = yaml.safe_load(yaml.safe_dump(web))
    container(unknown)["livenessProbe"]["httpGet"]["pathh"] = "/healthz"
    wrong_type = yaml.safe_load(yaml.safe_dump(web))
    wrong_type["spec"]["replicas"] = "two"
    missing = yaml.safe_load(yaml.safe_dump(web))
    del container(missing)["name"]
    for broken in (unknown, wrong_type, missing):
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(broken, KUBERNETES_VERSIONS[-1])


def test_a_site_must_give_the_database_redis_the_keys_and_the_storage():
    with pytest.raises(helm.HelmError, match=r"database\.url"):
        render({})
    minimal = values_file("minimal")
    with pytest.raises(helm.HelmError, match=r"storage\.url"):
        render({**minimal, "storage": {"url": ""}})
    with pytest.raises(helm.HelmError, match=r"solves\.executor"):
        render({**minimal, "solves": {"executor": "slurm"}})


# ---------------------------------------------------------------- what the manifests say


def test_the_four_roles_are_nodes_of_their_role(rendered):
    for values, docs in rendered.items():
        deployments = by_kind(docs, "Deployment")
        assert set(deployments) == {f"{FULLNAME}-{role}" for role in ROLES}, values
        for role, node_roles in ROLES.items():
            env = env_of(deployments[f"{FULLNAME}-{role}"])
            assert env["PRO_NODE_ROLES"] == node_roles
            assert env["PRO_NODE_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
            if role != "web":
                assert env["PRO_INTERNAL_API_URL"] == f"http://{FULLNAME}-web.{NAMESPACE}.svc:8000"
        sessions = env_of(deployments[f"{FULLNAME}-sessions"])
        assert sessions["PRO_NODE_ADDRESS"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_web_is_probed_on_healthz_and_the_other_roles_on_their_heartbeat(rendered):
    deployments = by_kind(rendered["minimal"], "Deployment")
    web = container(deployments[f"{FULLNAME}-web"])
    assert web["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert web[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    for role in ("sessions", "solves", "backend"):
        pod = container(deployments[f"{FULLNAME}-{role}"])
        for probe in ("startupProbe", "livenessProbe"):
            command = pod[probe]["exec"]["command"]
            assert command[:2] == ["python", "-c"] and "last_heartbeat" in command[2]


def test_settings_come_from_the_configmap_and_secrets_from_files(rendered):
    docs = rendered["site"]
    (config,) = by_kind(docs, "ConfigMap").values()
    data = config["data"]
    assert data["PRO_STORAGE_URL"] == "s3://pro-platform/storage"
    assert data["AWS_S3_ENDPOINT_URL"] == "https://s3.eu-central-1.amazonaws.com"
    assert data["PRO_HTTPS"] == "true" and data["PRO_SSL_REDIRECT"] == "false"
    assert "pro.example.com" in data["PRO_ALLOWED_HOSTS"].split(",")
    assert f"{FULLNAME}-web" in data["PRO_ALLOWED_HOSTS"].split(",")
    assert data["PRO_CSRF_TRUSTED_ORIGINS"] == "https://pro.example.com"
    assert data["PRO_TRUSTED_PROXIES"] == "10.244.0.0/16"
    (secret,) = by_kind(docs, "Secret").values()
    assert {"DATABASE_URL", "REDIS_URL", "PRO_SECRET_KEY", "PRO_PLATFORM_KEY"} <= set(secret["stringData"])
    web = by_kind(docs, "Deployment")[f"{FULLNAME}-web"]
    env = env_of(web)
    for key in ("DATABASE_URL", "REDIS_URL", "PRO_SECRET_KEY", "PRO_PLATFORM_KEY", "PRO_METRICS_TOKEN"):
        assert env[f"{key}_FILE"] == f"/run/secrets/pro/{key}"
        assert key not in env
    assert env["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"]["key"] == "AWS_SECRET_ACCESS_KEY"
    assert env["PRO_OIDC_CLIENT_SECRET_FILE"] == "/run/secrets/pro/PRO_OIDC_CLIENT_SECRET"
    volumes = {volume["name"]: volume for volume in web["spec"]["template"]["spec"]["volumes"]}
    mounted = {item["key"] for item in volumes["secrets"]["secret"]["items"]}
    assert mounted == {key.removesuffix("_FILE") for key in env if key.endswith("_FILE")}


def test_app_code_runs_in_pods_that_may_make_user_namespaces_and_nothing_more(rendered):
    for values, docs in rendered.items():
        for deployment in by_kind(docs, "Deployment").values():
            pod = deployment["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
            context = container(deployment)["securityContext"]
            assert context["seccompProfile"] == {"type": "Unconfined"}
            assert context["appArmorProfile"] == {"type": "Unconfined"}
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
            assert "privileged" not in context
            if values == "kubernetes-executor":  # sandbox.userNamespace
                assert pod["hostUsers"] is False and context["procMount"] == "Unmasked"
            else:
                assert "hostUsers" not in pod and "procMount" not in context
    unsandboxed = values_file("minimal") | {"sandbox": {"mode": "off"}}
    for deployment in by_kind(manifests(render(unsandboxed)), "Deployment").values():
        assert container(deployment)["securityContext"].get("seccompProfile") is None


def test_the_kubernetes_executor_may_manage_jobs_and_read_pods_in_its_namespace_only(rendered):
    docs = rendered["kubernetes-executor"]
    solves = by_kind(docs, "Deployment")[f"{FULLNAME}-solves"]
    env = env_of(solves)
    assert env["PRO_EXECUTOR"] == "kubernetes" and env["PRO_K8S_NAMESPACE"] == "pro-solves"
    assert env["PRO_K8S_IMAGE"] == "pro-node:0.1.0"
    assert env["PRO_EXECUTOR_API_URL"] == f"http://{FULLNAME}-web.{NAMESPACE}.svc:8000"
    pod = solves["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{FULLNAME}-solves" and pod["automountServiceAccountToken"] is True
    for role in ("web", "sessions", "backend"):
        assert (
            by_kind(docs, "Deployment")[f"{FULLNAME}-{role}"]["spec"]["template"]["spec"][
                "automountServiceAccountToken"
            ]
            is False
        )
    roles = [doc for doc in docs if doc["kind"] == "Role"]
    bindings = [doc for doc in docs if doc["kind"] == "RoleBinding"]
    assert [role["metadata"]["namespace"] for role in roles] == ["pro-solves", "pro-solves-gpu"]
    assert [binding["metadata"]["namespace"] for binding in bindings] == ["pro-solves", "pro-solves-gpu"]
    for role in roles:
        assert role["rules"] == [
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "patch", "delete"]},
        ]
    for binding in bindings:
        assert binding["roleRef"]["name"] == roles[0]["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{FULLNAME}-solves", "namespace": NAMESPACE}]
    accounts = by_kind(docs, "ServiceAccount")
    assert accounts[FULLNAME]["automountServiceAccountToken"] is False
    # The local executor has no rights in the API at all.
    local = rendered["minimal"]
    assert not by_kind(local, "Role") and not by_kind(local, "RoleBinding")
    assert env_of(by_kind(local, "Deployment")[f"{FULLNAME}-solves"])["PRO_EXECUTOR"] == "local"


def test_solve_pods_reach_only_the_web_pods_and_dns(rendered):
    docs = rendered["kubernetes-executor"]
    attempts = [doc for doc in docs if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"].endswith("-attempts")]
    assert [policy["metadata"]["namespace"] for policy in attempts] == ["pro-solves", "pro-solves-gpu"]
    assert attempts[0]["spec"] == attempts[1]["spec"]
    spec = attempts[0]["spec"]
    # Every solve pod of the namespace, whatever else its labels say.
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "solve-attempt"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
    api, dns = spec["egress"]
    (web,) = api["to"]
    assert web["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "web"
    assert web["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NAMESPACE}
    assert api["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert {port["port"] for port in dns["ports"]} == {53}
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    # The sessions pods take connections from the web pods only; solves and backend from nobody.
    policies = by_kind(docs, "NetworkPolicy")
    sessions = policies[f"{FULLNAME}-sessions"]["spec"]["ingress"]
    assert [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in sessions[0]["from"]] == [
        "web"
    ]
    for role in ("solves", "backend"):
        assert "ingress" not in policies[f"{FULLNAME}-{role}"]["spec"]
    assert f"{FULLNAME}-solve-attempts" not in by_kind(rendered["minimal"], "NetworkPolicy")


def test_every_role_has_a_disruption_budget(rendered):
    for values, docs in rendered.items():
        budgets = by_kind(docs, "PodDisruptionBudget")
        assert set(budgets) == {f"{FULLNAME}-{role}" for role in ROLES}, values
    sessions = by_kind(rendered["site"], "PodDisruptionBudget")[f"{FULLNAME}-sessions"]["spec"]
    assert sessions["minAvailable"] == 1 and "maxUnavailable" not in sessions
    web = by_kind(rendered["site"], "PodDisruptionBudget")[f"{FULLNAME}-web"]["spec"]
    assert web["maxUnavailable"] == 1


def test_the_solves_role_scales_on_the_job_queue(rendered):
    assert not by_kind(rendered["minimal"], "HorizontalPodAutoscaler")
    (hpa,) = by_kind(rendered["site"], "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{FULLNAME}-solves"
    queue, running = hpa["spec"]["metrics"]
    assert queue["external"]["metric"] == {"name": "pro_queue_jobs", "selector": {"matchLabels": {"release": "pro"}}}
    assert queue["external"]["target"] == {"type": "AverageValue", "averageValue": "2"}
    assert running["external"]["metric"]["name"] == "pro_jobs_running"
    assert "replicas" not in by_kind(rendered["site"], "Deployment")[f"{FULLNAME}-solves"]["spec"]
    # KEDA instead: a ScaledObject (its schema is KEDA's, so checked here) and no HPA of the chart's.
    docs = rendered["kubernetes-executor"]
    assert not by_kind(docs, "HorizontalPodAutoscaler")
    (scaled,) = by_kind(docs, "ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{FULLNAME}-solves",
    }
    assert scaled["spec"]["minReplicaCount"] == 1 and scaled["spec"]["maxReplicaCount"] == 10
    queue_trigger = scaled["spec"]["triggers"][0]
    assert queue_trigger["type"] == "prometheus"
    assert queue_trigger["metadata"]["query"] == "sum(pro_queue_jobs) or vector(0)"
    assert set(queue_trigger["metadata"]) == {"serverAddress", "query", "threshold"}
    (monitor,) = by_kind(docs, "ServiceMonitor").values()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["authorization"]["credentials"]["key"] == "PRO_METRICS_TOKEN"


def test_the_web_role_is_reached_through_its_service_and_ingress(rendered):
    docs = rendered["site"]
    (service,) = by_kind(docs, "Service").values()
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "web"
    (ingress,) = by_kind(docs, "Ingress").values()
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "pro.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": service["metadata"]["name"],
        "port": {"name": "http"},
    }


def test_the_shared_volume_is_mounted_by_every_role(rendered):
    docs = rendered["kubernetes-executor"]
    (claim,) = by_kind(docs, "PersistentVolumeClaim").values()
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (config,) = by_kind(docs, "ConfigMap").values()
    assert config["data"]["PRO_STORAGE_URL"] == "file:///var/lib/pro-storage"
    for deployment in by_kind(docs, "Deployment").values():
        mounts = {mount["name"]: mount["mountPath"] for mount in container(deployment)["volumeMounts"]}
        assert mounts["storage"] == "/var/lib/pro-storage" and mounts["data"] == "/var/lib/pro"


# ---------------------------------------------------------------- the node probe, run


def test_the_node_probe_passes_on_a_fresh_heartbeat_only(transactional_db, settings):
    """The exec probe of sessions, solves and backend, run as the kubelet would, on the test database."""
    from django.utils import timezone

    from apps.cluster.models import Node
    from tests.live import platform_env

    deployment = by_kind(manifests(render(values_file("minimal"))), "Deployment")[f"{FULLNAME}-solves"]
    command = container(deployment)["livenessProbe"]["exec"]["command"]
    assert command[0] == "python"
    command = [sys.executable, *command[1:]]
    now = timezone.now()
    Node.objects.create(name="fresh-pod", last_heartbeat=now - timedelta(seconds=5))
    Node.objects.create(name="stale-pod", last_heartbeat=now - timedelta(seconds=400))

    def probe(node: str) -> subprocess.CompletedProcess:
        env = platform_env(8000, PRO_NODE_NAME=node, PRO_HEARTBEAT_SECONDS="30")
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    fresh = probe("fresh-pod")
    assert fresh.returncode == 0, fresh.stderr
    stale = probe("stale-pod")
    assert stale.returncode == 1
    assert re.search(r"node stale-pod: last heartbeat 4\d\d s ago, limit 90 s", stale.stderr), stale.stderr
    unknown = probe("new-pod")
    assert unknown.returncode == 1 and "node new-pod: not registered" in unknown.stderr
