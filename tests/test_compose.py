"""The deployment files, checked with a YAML parser (no Docker engine runs here).

docker-compose.yml: services, images, commands, environment, health checks, dependencies and
volumes; the Dockerfile runs as a non-root user; .env.example names every variable that
DESIGN.md, Settings and the compose file use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import Settings
from bot.webhook import WEBHOOK_PATH

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
CADDYFILE = ROOT / "deploy" / "Caddyfile"

# DESIGN.md, "Contracts": the environment every deployment understands.
DESIGN_ENV = (
    "KINDRED_DATABASE_URL",
    "KINDRED_SECRET_KEY",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_API_BASE",
    "RASA_URL",
    "RASA_TOKEN",
    "REDIS_URL",
    "KINDRED_VOLUNTEER_CHAT_ID",
    "KINDRED_WEBHOOK_URL",
    "KINDRED_HTTP_PORT",
)
KINDRED_SERVICES = ("bot", "scheduler", "migrate")
RASA_IMAGE = "rasa/rasa:3.6.21-full"
ONE_SHOTS = ("migrate", "rasa-train")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file, parsed (anchors and merge keys resolved)."""
    parsed: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return parsed


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services section."""
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def settings_env_names() -> set[str]:
    """The environment variable of every Settings field (its first alias)."""
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = getattr(alias, "choices", [alias])
        names.add(str(choices[0]))
    return names


def env_example_names() -> set[str]:
    """Names in .env.example, set or shown commented out (`# NAME=example`)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))


def test_the_services_and_their_images(services: dict[str, dict[str, Any]]) -> None:
    assert {"bot", "scheduler", "rasa", "rasa-train", "postgres", "redis"} <= set(services)
    for name in KINDRED_SERVICES:
        assert services[name]["build"] == "."
        assert services[name]["image"] == "kindred:latest"  # one image, several roles
    assert services["rasa"]["image"] == RASA_IMAGE
    assert services["rasa-train"]["image"] == RASA_IMAGE
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"].startswith("redis:")


def test_the_bot_scales_and_the_roles_run_the_right_commands(
    services: dict[str, dict[str, Any]],
) -> None:
    bot = services["bot"]
    # `--scale bot=3` needs no fixed name and no fixed host port.
    assert "container_name" not in bot and "ports" not in bot
    assert bot["command"] == ["run", "--role", "bot"]
    assert "8080" in [str(port) for port in bot["expose"]]
    assert services["scheduler"]["command"] == ["scheduler"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    train = services["rasa-train"]["command"]
    assert train[:2] == ["train", "nlu"]
    assert "./nlu:/project:ro" in services["rasa-train"]["volumes"]
    run = services["rasa"]["command"]
    assert run[:2] == ["run", "--enable-api"]
    # `--auth-token=TOKEN` as one argument: Rasa's argparse reads a separate "-abc..." as a flag.
    assert "--auth-token=${RASA_TOKEN:?set RASA_TOKEN in .env}" in run
    model = run[run.index("--model") + 1]
    fixed_name = train[train.index("--fixed-model-name") + 1]
    assert model == f"{train[train.index('--out') + 1]}/{fixed_name}.tar.gz"


def test_every_long_running_service_has_a_health_check(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name in ONE_SHOTS:
            assert service["restart"] == "no", name
            continue
        check = service.get("healthcheck")
        assert check and check["test"], f"{name} has no health check"
        assert service["restart"] == "unless-stopped", name
    probe = " ".join(services["bot"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8080/healthz" in probe


def test_dependencies_wait_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            assert rule["condition"] in CONDITIONS
    for role in ("bot", "scheduler"):
        depends = services[role]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert services["rasa"]["depends_on"]["rasa-train"]["condition"] == (
        "service_completed_successfully"
    )


def test_data_lives_in_named_volumes(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose["volumes"])
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert any(m.startswith("rasa-models:") for m in services["rasa"]["volumes"])


def test_the_kindred_services_get_the_whole_environment(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in KINDRED_SERVICES:
        env = services[name]["environment"]
        missing = set(DESIGN_ENV) - set(env)
        assert not missing, f"{name} lacks {missing}"
        assert str(env["KINDRED_HTTP_PORT"]) == "8080"
        assert env["KINDRED_WEBHOOK_URL"].startswith("https://")
        assert env["KINDRED_WEBHOOK_URL"].endswith(WEBHOOK_PATH)
        assert env["KINDRED_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["RASA_URL"] == "http://rasa:5005"
    # Secrets are never written into the compose file, only interpolated from .env.
    assert services["bot"]["environment"]["KINDRED_SECRET_KEY"].startswith("${")
    assert services["bot"]["environment"]["TELEGRAM_BOT_TOKEN"].startswith("${")


def test_env_example_names_every_variable() -> None:
    named = env_example_names()
    compose_vars = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    for required in (set(DESIGN_ENV), settings_env_names(), compose_vars):
        missing = required - named
        assert not missing, f".env.example lacks {sorted(missing)}"


def test_the_image_runs_kindred_as_a_non_root_user() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0].startswith("FROM python:3.11-slim")
    final_stage = instructions[
        max(i for i, line in enumerate(instructions) if line.startswith("FROM ")) :
    ]
    assert final_stage[0].startswith("FROM python:3.11-slim")
    users = [line.split()[1] for line in final_stage if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert 'ENTRYPOINT ["kindred"]' in final_stage
    assert any("pip install ." in line for line in instructions)


def test_the_proxy_sends_only_the_webhook_to_the_bot_replicas(
    services: dict[str, dict[str, Any]],
) -> None:
    caddy = CADDYFILE.read_text()
    assert f"handle {WEBHOOK_PATH}" in caddy
    assert "name bot" in caddy and "port 8080" in caddy
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in services["proxy"]["volumes"]
    assert sorted(services["proxy"]["ports"]) == ["443:443", "80:80"]
