"""The deployment files: the compose file's promises (pinned images,
healthchecks, ports on 127.0.0.1 only, migrations before the workers, one env
file, log rotation) and a worker refusing bad settings before connecting."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import yaml

from testkit import ROOT

COMPOSE = yaml.safe_load((ROOT / "bin" / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
BOT_SERVICES = ("collector", "trader", "optimizer", "beat")


def test_every_service_image_is_pinned():
    for name, service in SERVICES.items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), name
    assert SERVICES["database"]["image"].startswith("timescale/timescaledb:")


def test_published_ports_bind_to_localhost_only():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the world"


def test_workers_from_one_image_with_healthchecks_and_the_seed_commands():
    queues = {"collector": "collector_queue", "trader": "trader_queue",
              "optimizer": "optimizer_queue"}
    for name in BOT_SERVICES:
        service = SERVICES[name]
        assert service["image"] == "upbit-bot:local"
        assert service["build"]["dockerfile"] == "bin/compose/bot/Dockerfile"
        assert service["env_file"] == "../.env"
        assert service["restart"] == "unless-stopped"
        assert service["logging"]["options"]["max-size"]
        assert service["healthcheck"]["test"][-2:] == ["health", name]
        depends = service["depends_on"]
        assert depends["database"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        command = service["command"]
        if name in queues:
            # -q: no banners, every line in the log format (as under bot run)
            assert command[:5] == ["celery", "-q", "-A", "bot.worker.app", "worker"]
            assert command[command.index("-Q") + 1] == queues[name]
        else:
            assert command[:5] == ["celery", "-q", "-A", "bot.worker.app", "beat"]
            assert any(v.startswith("beat:") for v in service["volumes"])


def test_infrastructure_has_healthchecks_and_volumes():
    for name in ("database", "redis"):
        assert SERVICES[name]["healthcheck"]["test"]
        assert SERVICES[name]["volumes"]
    assert SERVICES["migrate"]["command"] == ["python", "-m", "bot", "migrate"]
    assert SERVICES["flower"]["profiles"] == ["monitoring"]
    assert set(COMPOSE["volumes"]) >= {"database", "redis", "beat"}


def test_dockerfile_is_slim_non_root_and_cache_friendly():
    text = (ROOT / "bin" / "compose" / "bot" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[\d.]*-slim", text, re.M)
    assert re.search(r"^USER bot$", text, re.M)
    # dependencies from pyproject.toml are installed before the code is copied
    assert text.index("COPY pyproject.toml") < text.index("COPY bot ./bot")


def test_readme_gives_the_compose_command():
    readme = (ROOT / "README.md").read_text()
    assert "cp .env.example .env && docker compose -f bin/docker-compose.yaml up -d" in readme


def test_worker_with_a_bad_setting_exits_2_before_connecting(tmp_path):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "THRESHOLD": "abc",
           "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "bot.worker.app", "worker", "-Q",
                           "trader_queue"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "bot: invalid setting THRESHOLD='abc'" in done.stderr
    assert "Traceback" not in done.stderr
