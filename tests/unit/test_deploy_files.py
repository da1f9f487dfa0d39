"""What docker/compose.yaml and deploy/kubernetes/ promise, read from the files: the
hardening, a stop grace period above the drain, probes on the ops port, secrets as
read-only files, and only flags `serve` and `install` have. (`make k8s-check` validates
the manifests against the Kubernetes schemas; `make image-test` runs the compose settings.)"""

from __future__ import annotations

import re

import pytest
import yaml
from support import ROOT

from data_service import cli

KNOWN = set(re.findall(r"--[a-z][a-z0-9-]*", cli.__doc__ or ""))
OURS = ("install", "data-service", "app", "notes-example")


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]


def manifests() -> dict[str, dict]:
    found = {}
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def seconds(flags: list[str], name: str) -> float:
    return float(next(flag.split("=", 1)[1] for flag in flags if flag.startswith(name + "=")))


def flags_in(args: list[str]) -> set[str]:
    return {word.split("=", 1)[0] for arg in args for word in arg.split() if word.startswith("--")}


@pytest.mark.parametrize("name", OURS)
def test_compose_hardens_every_container_of_ours(name):
    service = compose()[name]
    assert service["read_only"] is True and service["init"] is True
    assert service["cap_drop"] == ["ALL"] and service["security_opt"] == ["no-new-privileges:true"]
    assert any(mount.startswith("/tmp:") for mount in service["tmpfs"])  # serve's workers write there


def test_compose_stops_after_the_drain_and_uses_known_flags():
    services = compose()
    command = services["data-service"]["command"]
    drain = seconds(command, "--drain-delay") + seconds(command, "--drain-timeout")
    grace = int(services["data-service"]["stop_grace_period"].removesuffix("s"))
    assert grace > drain, (grace, drain)
    assert flags_in(command) <= KNOWN and flags_in(services["install"]["command"]) <= KNOWN
    assert "trap " in services["app"]["command"][0] and "wait" in services["app"]["command"][0]
    assert services["notes-example"]["environment"]["DATA_SERVICE_TOKEN_FILE"] == "/run/secrets/api_tokens"


def test_the_pod_runs_a_native_sidecar_probed_on_the_ops_port():
    pod = manifests()["Deployment/notes"]["spec"]["template"]
    spec, annotations = pod["spec"], pod["metadata"]["annotations"]
    (sidecar,) = spec["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    args = sidecar["args"]
    assert args[0] == "serve" and flags_in(args) <= KNOWN
    assert "--listen=127.0.0.1" in args and "--ops-listen=0.0.0.0:9090" in args
    assert sidecar["ports"] == [{"name": "ops", "containerPort": 9090, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert sidecar[probe]["httpGet"]["port"] == "ops", probe
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/_health"  # never CouchDB: no restart loops
    assert annotations["prometheus.io/port"] == "9090" and annotations["prometheus.io/path"] == "/_metrics"
    drain = seconds(args, "--drain-delay") + seconds(args, "--drain-timeout")
    assert spec["terminationGracePeriodSeconds"] > drain


@pytest.mark.parametrize("name", ["Deployment/notes", "Job/data-service-install"])
def test_manifests_are_non_root_read_only_and_read_secrets_from_files(name):
    spec = manifests()[name]["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
    assert spec["automountServiceAccountToken"] is False
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for container in spec.get("initContainers", []) + spec["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert "resources" in container and "limits" in container["resources"]
        assert "envFrom" not in container and all("valueFrom" not in env for env in container.get("env", []))
        for mount in container["volumeMounts"]:
            if "secret" in volumes[mount["name"]]:
                assert mount["readOnly"] is True and volumes[mount["name"]]["secret"]["defaultMode"] == 0o440
        if container["name"] != "app":
            assert flags_in(container["args"]) <= KNOWN


def test_only_the_install_job_sees_the_admin_password():
    found = manifests()
    pod = found["Deployment/notes"]["spec"]["template"]["spec"]
    couchdb = next(volume for volume in pod["volumes"] if volume["name"] == "couchdb")["secret"]
    assert couchdb["items"] == [{"key": "service_user_password", "path": "service_user_password"}]
    job = found["Job/data-service-install"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--couchdb-password-file=/run/secrets/couchdb/admin_password" in job
    assert set(found["Secret/data-service-couchdb"]["stringData"]) == {"service_user_password", "admin_password"}
