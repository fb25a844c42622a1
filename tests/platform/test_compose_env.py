"""docker-compose.yaml and the Dockerfile, checked without Docker: the file validates against
the Compose Specification's JSON Schema, and everything it references exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lung_model.platform.compose_env import GENERATORS, read_env, write_compose_env
from lung_model.settings import PROJECT_ROOT

SCHEMAS = Path(__file__).parents[1] / "fixtures" / "schemas"
AIRFLOW = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
LONG_RUNNING = (*AIRFLOW, "airflow-worker", "postgres", "redis", "mlflow", "dashboard")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text()))


def test_validates_against_the_compose_schema(compose: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    jsonschema.validate(compose, schema)
    broken = {**compose, "services": {"x": {"image": "a", "ports": "not-a-list"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_the_services_of_the_deployment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(LONG_RUNNING) | {"airflow-init"} <= set(services)
    for name in LONG_RUNNING:
        assert "healthcheck" in services[name], f"{name} has no health check"
    built = {n for n, s in services.items() if "build" in s}
    assert built == {n for n in services if n not in ("postgres", "redis")}  # one image
    assert {s["image"] for n, s in services.items() if n in built} == {"lung-triage:latest"}


def test_airflow_is_celery_with_one_jwt_secret(compose: dict[str, Any]) -> None:
    services = compose["services"]
    envs = [services[n]["environment"] for n in (*AIRFLOW, "airflow-worker")]
    assert {e["AIRFLOW__CORE__EXECUTOR"] for e in envs} == {"CeleryExecutor"}
    assert len({e["AIRFLOW__API_AUTH__JWT_SECRET"] for e in envs}) == 1
    assert envs[0]["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET:?")
    assert envs[0]["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
    assert envs[0]["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    worker = services["airflow-worker"]["command"]
    assert "tensorflow" in worker[worker.index("--queues") + 1].split(",")


def test_published_ports_are_local_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} publicly"


def test_every_referenced_file_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            assert (PROJECT_ROOT / build["context"] / build["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (PROJECT_ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
        for word in service.get("command", []):  # paths inside the image: /app/<repo path>
            for path in re.findall(r"/app/([\w./-]+)", str(word)):
                assert (PROJECT_ROOT / path).exists(), f"{name} runs missing /app/{path}"


def test_every_dockerfile_copy_source_exists() -> None:
    for line in (PROJECT_ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            sources = [w for w in line.split()[1:-1] if not w.startswith("--")]
            for source in sources:
                assert (PROJECT_ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_the_image_carries_the_dashboards_streamlit_config(compose: dict[str, Any]) -> None:
    """Streamlit reads .streamlit/config.toml from its working directory (the image's
    WORKDIR): without it the compose dashboard shows the Deploy button (issue 13)."""
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    workdir = re.findall(r"^WORKDIR (\S+)", dockerfile, re.MULTILINE)[-1]
    assert "COPY --chown=lung:0 .streamlit/config.toml ./.streamlit/config.toml" in dockerfile
    assert "working_dir" not in compose["services"]["dashboard"] and workdir == "/app"
    assert 'toolbarMode = "minimal"' in (PROJECT_ROOT / ".streamlit" / "config.toml").read_text()


def test_compose_env_provides_every_required_variable(tmp_path: Path) -> None:
    text = (PROJECT_ROOT / "docker-compose.yaml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required <= set(GENERATORS)
    env = tmp_path / ".env"
    env.write_text("LUNG_ALERT_WEBHOOK=http://example.invalid\nAIRFLOW_JWT_SECRET=kept")
    first = write_compose_env(env)
    assert first["AIRFLOW_JWT_SECRET"] == "kept"
    assert read_env(env)["LUNG_ALERT_WEBHOOK"] == "http://example.invalid"
    assert write_compose_env(env) == first  # idempotent
    assert env.stat().st_mode & 0o077 == 0
