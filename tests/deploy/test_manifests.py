"""Offline validation of everything under ``deploy/`` (no container engine or cluster runs here).

- ``docker/Dockerfile``: parsed with dockerfile-parse; the build context computed with the Docker
  SDK's own ``.dockerignore`` rules; the health-check command run against a real HTTP server.
- ``docker/compose.yaml``: ``${...}`` interpolated as Compose does, then checked against the
  compose-spec JSON schema that check-jsonschema ships (Apache-2.0, from the compose-spec project;
  the ``docker compose`` plugin is not installed here), then the cross-references the schema cannot
  see (start order, hosts in URLs, mounted files, the connection budget).
- ``k8s/``: kubernetes-validate in strict mode at :data:`K8S_VERSION`, plus the seed's HPA figures
  and the references between manifests (selectors, ports, ConfigMap, Secret keys).
- ``ecs/``: botocore's models of the AWS API requests the files are fed to
  (``RegisterTaskDefinition``, ``RegisterScalableTarget``, ``PutScalingPolicy``), plus the seed's figures.
- ``nginx/nginx.conf`` (the gateway; its behaviour: tests/deploy/test_nginx.py) and ``monitoring/prometheus.yml``:
  parsed, and their targets matched against the compose services (``test_monitoring.py`` runs
  ``promtool`` on the monitoring files).

Every ``TASKHUB_*`` name is checked against :class:`taskhub.config.Settings` (which ignores unknown
names silently), and every ``taskhub ...`` command line is parsed by the real CLI.
"""

from __future__ import annotations

import graphlib
import http.server
import importlib.resources
import ipaddress
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.loaders
import botocore.model
import botocore.validate
import crossplane
import jsonschema
import kubernetes_validate
import pytest
import typer.main
import yaml
from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser
from sqlalchemy.engine import make_url

from taskhub.cli import app as cli_app
from taskhub.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "docker" / ".env.example"
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
PROMETHEUS_CONF = DEPLOY / "monitoring" / "prometheus.yml"
K8S = DEPLOY / "k8s"
ECS = DEPLOY / "ecs"

K8S_VERSION = "1.33.0"  # the Kubernetes release the manifests are validated against
APP_UID = 10001  # the image's user; Kubernetes and ECS must run as the same uid
SEED_MIN_REPLICAS, SEED_MAX_REPLICAS, SEED_CPU_PERCENT = 3, 10, 70  # scalability-notes.md, section 10
SERVE_ARGV = ["taskhub", "serve", "--host", "0.0.0.0", "--port", "8000"]
API_PORT = 8000
SECRET_NAME = "taskhub-secrets"
SECRET_KEYS = {"database-url", "redis-url", "broker-url", "jwt-secret"}
# Secrets never appear as plain values in ECS/Kubernetes environment lists.
SECRET_SETTINGS = {"TASKHUB_DATABASE_URL", "TASKHUB_REDIS_URL", "TASKHUB_BROKER_URL", "TASKHUB_JWT_SECRET"}
# `taskhub worker` arrives with the events issue (11); until then its arguments cannot be parsed.
PENDING_COMMANDS = {"worker"}
BUILD_TOOLS = {"build-essential", "gcc", "g++", "cc", "clang", "make", "libc6-dev", "python3-dev", "libpq-dev"}
POSTGRES_DEFAULT_MAX_CONNECTIONS = 100
# Fargate's valid task sizes (AWS ECS developer guide, "Task CPU and memory"): CPU units -> MiB.
FARGATE_SIZES: dict[int, set[int]] = {
    256: {512, 1024, 2048},
    512: set(range(1024, 4097, 1024)),
    1024: set(range(2048, 8193, 1024)),
    2048: set(range(4096, 16385, 1024)),
    4096: set(range(8192, 30721, 1024)),
    8192: set(range(16384, 61441, 4096)),
    16384: set(range(32768, 122881, 8192)),
}


# --------------------------------------------------------------------------------------------- helpers


def settings_env_names() -> set[str]:
    """Every environment variable :class:`Settings` reads (``TASKHUB_`` + field name, upper case)."""
    return {"TASKHUB_" + name.upper() for name in Settings.model_fields}


def parse_cli(argv: list[str]) -> None:
    """Parse ``argv`` with the real ``taskhub`` CLI, without running it.

    Raises the CLI's usage error for an unknown command or option, so a typo in a manifest fails here.
    """
    assert argv[0] == "taskhub", argv
    group = typer.main.get_command(cli_app)
    commands: dict[str, Any] = group.commands  # type: ignore[attr-defined]
    name = argv[1]
    if name in PENDING_COMMANDS and name not in commands:
        return
    assert name in commands, f"`taskhub {name}` is not a command (have {sorted(commands)})"
    commands[name].make_context(name, argv[2:])


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """:class:`Settings` exactly as a process with ``env`` (and nothing else of ours) would build it."""
    for name in settings_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``.

    Raises:
        LookupError: a required variable is unset (or empty, for ``:?``), as ``docker compose`` refuses.
    """

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and missing:
            raise LookupError(f"{name}: {arg}")
        if op in (":-", "-") and missing:
            return arg
        return value or ""

    return _VAR.sub(substitute, text)


def read_env_example() -> dict[str, str]:
    """``deploy/docker/.env.example`` as a mapping (comments and blank lines skipped)."""
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def example_env() -> dict[str, str]:
    """``.env.example`` with its blank secrets filled in (40 bytes: the JWT key needs at least 32)."""
    return {name: value or f"example-{name.lower()}-" + "x" * 24 for name, value in read_env_example().items()}


@dataclass
class Stage:
    """One ``FROM`` section of the Dockerfile."""

    base: str
    name: str | None
    instructions: list[dict[str, Any]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        """The values of every ``instruction`` in this stage, in order."""
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]


def dockerfile_stages() -> list[Stage]:
    """The Dockerfile split into stages (``ARG`` defaults substituted in ``FROM``)."""
    parser = DockerfileParser(str(DOCKERFILE))
    stages: list[Stage] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            base, _, name = instruction["value"].partition(" AS ")
            stages.append(Stage(base=base.strip(), name=name.strip() or None))
        elif stages:
            stages[-1].instructions.append(instruction)
    resolved = parser.parent_images  # the FROM images with ARG defaults applied
    for stage, image in zip(stages, resolved, strict=True):
        stage.base = image
    return stages


def build_context(root: Path) -> set[str]:
    """Paths under ``root`` that ``docker build`` sends, by Docker's ``.dockerignore`` rules (docker-py's)."""
    lines = [line.strip() for line in (root / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    context: set[str] = exclude_paths(str(root), patterns)
    return context


def healthcheck_argv() -> list[str]:
    """The exec-form command of the final stage's ``HEALTHCHECK`` (without the leading ``CMD``)."""
    [value] = dockerfile_stages()[-1].values("HEALTHCHECK")
    options, _, command = value.partition("CMD")
    assert options.strip().startswith("--"), value
    argv: list[str] = json.loads(command)
    return argv


def load_compose() -> dict[str, Any]:
    """``compose.yaml`` after interpolation with :func:`example_env` (what ``docker compose config`` sees)."""
    doc: dict[str, Any] = yaml.safe_load(interpolate(COMPOSE.read_text(), example_env()))
    return doc


def taskhub_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run the Taskhub image."""
    return {name: s for name, s in compose["services"].items() if s.get("image") == "taskhub:local"}


def api_services(compose: dict[str, Any]) -> list[str]:
    """Names of the compose services that run ``taskhub serve``."""
    return sorted(name for name, s in taskhub_services(compose).items() if s["command"][:2] == ["taskhub", "serve"])


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object under ``deploy/k8s`` (file name, object), the kustomization excluded."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    """The one Kubernetes object of ``kind`` called ``name``."""
    [obj] = [d for _, d in k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return obj


def pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) of every workload (Deployments and Jobs)."""
    for _, doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a ``matchLabels``-style selector selects an object with ``labels``."""
    return all(labels.get(key) == value for key, value in selector.items())


def load_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``."""
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


# ------------------------------------------------------------------------------------------ Dockerfile


class TestDockerfile:
    def test_is_multi_stage_with_a_builder(self) -> None:
        stages = dockerfile_stages()
        assert len(stages) == 2
        builder, final = stages
        assert builder.name == "builder"
        assert final.name == "runtime"
        # A final stage built FROM the builder would inherit its compilers.
        assert final.base == "python:3.11-slim-bookworm"
        assert builder.base == final.base  # the venv's interpreter path must exist in the final stage

    def test_builder_installs_the_package_into_a_venv_the_final_stage_copies(self) -> None:
        builder, final = dockerfile_stages()
        runs = " && ".join(builder.values("RUN"))
        assert "python -m venv /opt/venv" in runs
        assert re.search(r"/opt/venv/bin/pip install \.(\s|$)", runs), runs
        assert [v for v in final.values("COPY") if "--from=" in v] == ["--from=builder /opt/venv /opt/venv"]
        assert "PATH=/opt/venv/bin:$PATH" in final.values("ENV")[0]

    def test_final_stage_has_no_build_tools(self) -> None:
        builder, final = dockerfile_stages()
        # The check below means something only while the builder really has them.
        assert "build-essential" in " ".join(builder.values("RUN")).split()
        for instruction in final.instructions:
            if instruction["instruction"] in ("RUN", "COPY", "ADD"):
                words = set(re.split(r"[\s=;&|]+", instruction["value"]))
                assert not words & BUILD_TOOLS, instruction["content"]

    def test_runs_as_a_fixed_non_root_uid(self) -> None:
        final = dockerfile_stages()[-1]
        users = final.values("USER")
        assert users, "the final stage never switches away from root"
        user, _, group = users[-1].partition(":")
        assert user not in ("root", "0")
        assert int(user) == APP_UID and int(group) == APP_UID
        assert f"--uid {APP_UID}" in " ".join(final.values("RUN"))
        # No instruction after USER may run as anyone else.
        kinds = [i["instruction"] for i in final.instructions]
        assert kinds.index("USER") < kinds.index("CMD")

    def test_healthcheck_polls_health_with_python(self) -> None:
        [value] = dockerfile_stages()[-1].values("HEALTHCHECK")
        assert "--interval=10s" in value and "--timeout=3s" in value
        argv = healthcheck_argv()
        assert argv[:2] == ["python", "-c"]
        assert f"http://127.0.0.1:{API_PORT}/health" in argv[2]
        assert not {"curl", "wget"} & set(re.split(r"\W+", value))

    def test_default_command_serves_on_every_interface(self) -> None:
        final = dockerfile_stages()[-1]
        [cmd] = final.values("CMD")
        assert json.loads(cmd) == SERVE_ARGV
        parse_cli(SERVE_ARGV)
        assert final.values("EXPOSE") == [str(API_PORT)]

    def test_image_settings_are_known(self, monkeypatch: pytest.MonkeyPatch) -> None:
        [env] = dockerfile_stages()[-1].values("ENV")
        names = {pair.split("=", 1)[0] for pair in env.split() if pair.startswith("TASKHUB_")}
        assert names == {"TASKHUB_ENV", "TASKHUB_LOG_FORMAT"}
        assert names <= settings_env_names()
        settings = settings_from({"TASKHUB_ENV": "production", "TASKHUB_LOG_FORMAT": "json"}, monkeypatch)
        assert (settings.env, settings.log_format) == ("production", "json")

    def test_build_context_holds_the_sources(self) -> None:
        context = build_context(ROOT)
        for needed in (
            "pyproject.toml",
            "README.md",
            "src/taskhub/cli.py",
            "src/taskhub/migrations/env.py",
            "src/taskhub/migrations/script.py.mako",
            "src/taskhub/web/static/index.html",
        ):
            assert needed in context, needed
        builder = dockerfile_stages()[0]
        for copy in builder.values("COPY"):
            *sources, _destination = copy.split()
            for source in sources:
                assert source in context, f"COPY {source}: not in the build context"

    def test_build_context_leaves_out_private_and_generated_files(self, tmp_path: Path) -> None:
        # A tree holding what a working copy may hold, whatever this checkout happens to contain.
        files = [
            "pyproject.toml",
            "README.md",
            "src/taskhub/cli.py",
            "src/taskhub/__pycache__/cli.cpython-311.pyc",
            "src/taskhub.egg-info/PKG-INFO",
            ".env",
            "deploy/docker/.env",
            ".git/config",
            ".venv/bin/python",
            "data/taskhub.db",
            "data/jwt_secret",
            "tests/test_cli.py",
            "bench/out/result.json",
        ]
        for name in files:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text("x")
        (tmp_path / ".dockerignore").write_text((ROOT / ".dockerignore").read_text())
        files_sent = {p for p in build_context(tmp_path) if (tmp_path / p).is_file()}
        assert files_sent == {"pyproject.toml", "README.md", "src/taskhub/cli.py", ".dockerignore"}


class _HealthServer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class TestHealthcheckCommand:
    """The one health-check command of the image, compose and ECS, run for real."""

    @pytest.fixture
    def server(self) -> Iterator[tuple[type[_HealthServer], int]]:
        handler = type("Handler", (_HealthServer,), {"status": 200})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        yield handler, server.server_address[1]
        server.shutdown()
        server.server_close()

    @staticmethod
    def run_check(port: int) -> int:
        argv = healthcheck_argv()
        script = argv[2].replace(f":{API_PORT}/", f":{port}/")
        assert script != argv[2]
        return subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=10, check=False).returncode

    def test_exit_status_follows_health(self, server: tuple[type[_HealthServer], int]) -> None:
        handler, port = server
        assert self.run_check(port) == 0
        handler.status = 503
        assert self.run_check(port) == 1

    def test_nothing_listening_is_unhealthy(self, server: tuple[type[_HealthServer], int]) -> None:
        handler, port = server
        handler.status = 200
        assert self.run_check(port) == 0
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        assert self.run_check(free) == 1


# -------------------------------------------------------------------------------------- docker compose


class TestCompose:
    def test_matches_the_compose_spec_schema(self) -> None:
        vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
        schema = json.loads((vendor / "compose-spec.json").read_text())
        assert "Apache License" in (vendor / "licenses" / "LICENSE.compose-spec").read_text()
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
        validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(load_compose())]
        assert errors == []

    def test_variables_are_the_documented_ones_and_secrets_are_required(self) -> None:
        text = COMPOSE.read_text()
        used = {m.group(1) for m in _VAR.finditer(text)}
        documented = read_env_example()
        assert used == set(documented)
        required = {m.group(1) for m in _VAR.finditer(text) if m.group(2) in (":?", "?")}
        assert required == {"POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "TASKHUB_JWT_SECRET"}
        assert {name for name, value in documented.items() if not value} == required
        for name in required:  # compose refuses to start without each secret
            env = example_env()
            env[name] = ""
            with pytest.raises(LookupError, match=name):
                interpolate(text, env)

    def test_has_the_seed_topology(self) -> None:
        compose = load_compose()
        assert set(compose["services"]) == {
            "nginx",
            "api-1",
            "api-2",
            "api-3",
            "worker",
            "migrate",
            "static",
            "postgres",
            "redis",
            "rabbitmq",
            "prometheus",
        }
        services = taskhub_services(compose)
        assert api_services(compose) == ["api-1", "api-2", "api-3"]
        assert {name: s["command"] for name, s in services.items()} == {
            "api-1": SERVE_ARGV,
            "api-2": SERVE_ARGV,
            "api-3": SERVE_ARGV,
            "worker": ["taskhub", "worker"],
            "migrate": ["taskhub", "migrate"],
            "static": ["taskhub", "export-static", "/srv/taskhub/static"],
        }
        for service in services.values():
            parse_cli(service["command"])
            assert service["build"] == {"context": "../..", "dockerfile": "deploy/docker/Dockerfile"}

    def test_healthchecks(self) -> None:
        compose = load_compose()
        for name, service in compose["services"].items():
            check = service.get("healthcheck")
            assert check is not None, f"{name}: no healthcheck (the image's check would apply or none)"
            if name in ("migrate", "static"):
                # The image's check polls HTTP, which a one-shot command does not serve.
                assert check == {"disable": True}, name
            else:
                assert check["test"][0] == "CMD" and len(check["test"]) > 1, name
        for name in api_services(compose):
            assert compose["services"][name]["healthcheck"]["test"] == ["CMD", *healthcheck_argv()]
        # The worker's check is its own metrics endpoint, on the port Settings gives it.
        worker_check = compose["services"]["worker"]["healthcheck"]["test"]
        assert worker_check[:3] == ["CMD", "python", "-c"]
        assert f"http://127.0.0.1:{Settings.model_fields['metrics_port'].default}/metrics" in worker_check[3]

    def test_start_order(self) -> None:
        compose = load_compose()
        services = compose["services"]
        graph: dict[str, set[str]] = {}
        for name, service in services.items():
            # The schema takes any string here; the engine knows only these (plus on-failure:N).
            assert re.fullmatch(r"no|always|unless-stopped|on-failure(:\d+)?", service["restart"]), name
            depends = service.get("depends_on", {})
            assert isinstance(depends, dict), f"{name}: depends_on without conditions"
            graph[name] = set(depends)
            for target, spec in depends.items():
                assert target in services, f"{name} depends on unknown {target}"
                if spec["condition"] == "service_healthy":
                    assert "test" in services[target].get("healthcheck", {}), f"{name} waits for {target}'s health"
                elif spec["condition"] == "service_completed_successfully":
                    assert services[target].get("restart") == "no", f"{target} restarts, so never completes"
        order = list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
        assert order.index("postgres") < order.index("migrate")
        for name in (*api_services(compose), "worker"):
            assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
            assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert services["worker"]["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
        assert services["nginx"]["depends_on"] == {
            "static": {"condition": "service_completed_successfully"},
            **{name: {"condition": "service_healthy"} for name in api_services(compose)},
        }

    def test_taskhub_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        compose = load_compose()
        services = compose["services"]
        nginx_ip = ipaddress.ip_address(services["nginx"]["networks"]["backend"]["ipv4_address"])
        [subnet] = compose["networks"]["backend"]["ipam"]["config"]
        assert nginx_ip in ipaddress.ip_network(subnet["subnet"])
        for name, service in taskhub_services(compose).items():
            env = {key: str(value) for key, value in service["environment"].items()}
            assert set(env) <= settings_env_names(), f"{name}: unknown settings {set(env) - settings_env_names()}"
            settings = settings_from(env, monkeypatch)
            assert settings.env == "production"
            assert settings.resolve_jwt_secret() == example_env()["TASKHUB_JWT_SECRET"]
            assert [str(n) for n in settings.trusted_networks] == [f"{nginx_ip}/32"]
            database = make_url(settings.resolved_database_url)
            assert (database.drivername, database.host, database.port, database.database) == (
                "postgresql+asyncpg",
                "postgres",
                5432,
                "taskhub",
            )
            assert database.password == example_env()["POSTGRES_PASSWORD"]
            assert settings.redis_url == "redis://redis:6379/0"
            assert settings.broker_url == f"amqp://taskhub:{example_env()['RABBITMQ_PASSWORD']}@rabbitmq:5672/"
        for host in ("postgres", "redis", "rabbitmq"):
            assert host in services

    def test_postgres_connections_fit(self, monkeypatch: pytest.MonkeyPatch) -> None:
        compose = load_compose()
        assert "command" not in compose["services"]["postgres"]  # so max_connections is the default
        total = 0
        for name, service in taskhub_services(compose).items():
            if name in ("migrate", "static"):
                continue  # done before the others connect; static never connects
            settings = settings_from({k: str(v) for k, v in service["environment"].items()}, monkeypatch)
            total += settings.database_pool_size + settings.database_max_overflow
        assert total == 60
        assert total <= POSTGRES_DEFAULT_MAX_CONNECTIONS

    def test_taskhub_containers_are_hardened(self) -> None:
        for name, service in taskhub_services(load_compose()).items():
            assert service["read_only"] is True, name
            assert service["tmpfs"] == ["/tmp"], name
            assert service["cap_drop"] == ["ALL"], name
            assert service["security_opt"] == ["no-new-privileges:true"], name

    def test_mounted_files_and_build_inputs_exist(self) -> None:
        compose = load_compose()
        base = COMPOSE.parent
        mounts = []
        for service in compose["services"].values():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("."):
                    mounts.append(source)
                    assert (base / source).is_file(), source
            if "build" in service:
                context = (base / service["build"]["context"]).resolve()
                assert context == ROOT
                assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE
        assert sorted(mounts) == ["../monitoring/alerts.yml", "../monitoring/prometheus.yml", "../nginx/nginx.conf"]

    def test_prometheus_scrapes_every_api_instance(self) -> None:
        config = yaml.safe_load(PROMETHEUS_CONF.read_text())
        [job] = [j for j in config["scrape_configs"] if j["job_name"] == "taskhub-api"]
        [targets] = [s["targets"] for s in job["static_configs"]]
        assert targets == [f"{name}:{API_PORT}" for name in api_services(load_compose())]


class TestNginx:
    """The gateway itself is tested with the real nginx in tests/deploy/test_nginx.py."""

    def test_serves_from_disk_what_the_static_service_exports(self) -> None:
        services = load_compose()["services"]
        exported = services["static"]["command"][-1]
        assert services["static"]["volumes"] == [f"static:{exported}"]
        assert f"static:{exported}:ro" in services["nginx"]["volumes"]
        [config] = crossplane.parse(str(NGINX_CONF), single=True)["config"]
        roots = [
            d["args"]
            for http in config["parsed"]
            if http["directive"] == "http"
            for server in http["block"]
            if server["directive"] == "server"
            for location in server["block"]
            if location["directive"] == "location"
            for d in location.get("block", [])
            if d["directive"] == "root"
        ]
        assert roots == [[exported]]

    def test_least_conn_over_the_compose_api_services(self) -> None:
        [config] = crossplane.parse(str(NGINX_CONF), single=True)["config"]
        [http_block] = [d for d in config["parsed"] if d["directive"] == "http"]
        [upstream] = [d for d in http_block["block"] if d["directive"] == "upstream"]
        directives = [d["directive"] for d in upstream["block"]]
        assert directives[0] == "least_conn"
        servers = [d["args"][0] for d in upstream["block"] if d["directive"] == "server"]
        assert all(
            d["args"][1:] == ["max_fails=1", "fail_timeout=5s"] for d in upstream["block"] if d["directive"] == "server"
        )
        assert servers == [f"{name}:{API_PORT}" for name in api_services(load_compose())]
        [server] = [d for d in http_block["block"] if d["directive"] == "server"]
        [location] = [d for d in server["block"] if d["directive"] == "location" and d["args"] == ["/"]]
        proxy_pass = [d["args"] for d in location["block"] if d["directive"] == "proxy_pass"]
        assert proxy_pass == [[f"http://{upstream['args'][0]}"]]


# ----------------------------------------------------------------------------------------- Kubernetes


class TestKubernetes:
    def test_every_manifest_is_valid_at_the_pinned_version(self) -> None:
        docs = k8s_documents()
        assert {doc["kind"] for _, doc in docs} == {
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Job",
        }
        errors = []
        for filename, doc in docs:
            try:
                assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == "1.33"
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{filename}: {'.'.join(map(str, exc.path))}: {exc.message}")
        assert errors == []

    def test_kustomization_lists_every_manifest_and_sets_no_namespace(self) -> None:
        kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
        assert kustomization["kind"] == "Kustomization"
        manifests = sorted(p.name for p in K8S.glob("*.y*ml") if p.name != "kustomization.yaml")
        assert sorted(kustomization["resources"]) == manifests
        assert "namespace" not in kustomization
        for filename, doc in k8s_documents():
            assert "namespace" not in doc["metadata"], filename
        images = {image["name"] for image in kustomization["images"]}
        for _, pod in pod_templates():
            for container in pod["containers"]:
                assert container["image"] in images

    def test_hpa_is_the_seeds(self) -> None:
        hpa = k8s_object("HorizontalPodAutoscaler", "taskhub-api")
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"] == {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "taskhub-api"},
            "minReplicas": SEED_MIN_REPLICAS,
            "maxReplicas": SEED_MAX_REPLICAS,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": SEED_CPU_PERCENT},
                    },
                }
            ],
        }
        target = k8s_object("Deployment", "taskhub-api")
        assert target["spec"]["replicas"] == SEED_MIN_REPLICAS
        # Utilization is a share of the CPU request: without one the HPA cannot compute it.
        for container in target["spec"]["template"]["spec"]["containers"]:
            assert container["resources"]["requests"]["cpu"]

    def test_api_probes_and_command(self) -> None:
        [container] = k8s_object("Deployment", "taskhub-api")["spec"]["template"]["spec"]["containers"]
        assert container["command"] == SERVE_ARGV
        parse_cli(container["command"])
        assert container["ports"] == [{"name": "http", "containerPort": API_PORT, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
        assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}

    def test_worker_and_migration_job(self) -> None:
        [worker] = k8s_object("Deployment", "taskhub-worker")["spec"]["template"]["spec"]["containers"]
        assert worker["command"] == ["taskhub", "worker"]
        metrics_port = Settings.model_fields["metrics_port"].default
        assert worker["ports"] == [{"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"}]
        assert worker["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
        job = k8s_object("Job", "taskhub-migrate")
        [migrate] = job["spec"]["template"]["spec"]["containers"]
        assert migrate["command"] == ["taskhub", "migrate"]
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        assert job["spec"]["backoffLimit"] == 3
        for argv in (worker["command"], migrate["command"]):
            parse_cli(argv)

    def test_every_workload_is_bounded_and_hardened(self) -> None:
        names = []
        for name, pod in pod_templates():
            names.append(name)
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            assert pod["securityContext"]["runAsUser"] == APP_UID, name  # the image's USER
            assert pod["automountServiceAccountToken"] is False, name
            volumes = {v["name"]: v for v in pod["volumes"]}
            for container in pod["containers"]:
                for bound in ("requests", "limits"):
                    assert set(container["resources"][bound]) == {"cpu", "memory"}, (name, bound)
                context = container["securityContext"]
                assert context["readOnlyRootFilesystem"] is True, name
                assert context["allowPrivilegeEscalation"] is False, name
                assert context["capabilities"] == {"drop": ["ALL"]}, name
                [tmp] = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
                assert "emptyDir" in volumes[tmp["name"]], name
        assert sorted(names) == ["taskhub-api", "taskhub-migrate", "taskhub-worker"]

    def test_selectors_reach_the_api_pods_only(self) -> None:
        api = k8s_object("Deployment", "taskhub-api")
        worker = k8s_object("Deployment", "taskhub-worker")
        api_labels = api["spec"]["template"]["metadata"]["labels"]
        worker_labels = worker["spec"]["template"]["metadata"]["labels"]
        for deployment in (api, worker):
            assert selects(
                deployment["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]
            )
        service = k8s_object("Service", "taskhub-api")
        pdb = k8s_object("PodDisruptionBudget", "taskhub-api")
        for selector in (service["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"]):
            assert selects(selector, api_labels)
            assert not selects(selector, worker_labels)
        [port] = service["spec"]["ports"]
        [container] = api["spec"]["template"]["spec"]["containers"]
        assert port["targetPort"] in {p["name"] for p in container["ports"]}

    def test_pdb_leaves_room_to_drain(self) -> None:
        pdb = k8s_object("PodDisruptionBudget", "taskhub-api")
        # Below the HPA's minimum, so a node drain can always evict one pod.
        assert pdb["spec"]["minAvailable"] == 2
        assert pdb["spec"]["minAvailable"] < SEED_MIN_REPLICAS

    def test_settings_come_from_the_configmap_and_a_secret_reference(self, monkeypatch: pytest.MonkeyPatch) -> None:
        docs = k8s_documents()
        assert [doc for _, doc in docs if doc["kind"] == "Secret"] == []  # no values committed
        config = k8s_object("ConfigMap", "taskhub-config")["data"]
        assert set(config) <= settings_env_names()
        assert not set(config) & SECRET_SETTINGS
        used_keys: set[str] = set()
        for name, pod in pod_templates():
            for container in pod["containers"]:
                assert container["envFrom"] == [{"configMapRef": {"name": "taskhub-config"}}], name
                env = {}
                for variable in container["env"]:
                    ref = variable["valueFrom"]["secretKeyRef"]  # no plain values besides the ConfigMap
                    assert ref["name"] == SECRET_NAME
                    assert ref["key"] in SECRET_KEYS
                    used_keys.add(ref["key"])
                    env[variable["name"]] = "x" * 40
                assert set(env) <= SECRET_SETTINGS, name
                if container["name"] == "api":
                    env["TASKHUB_DATABASE_URL"] = "postgresql+asyncpg://taskhub:pw@db:5432/taskhub"
                    settings = settings_from({**config, **env}, monkeypatch)
                    assert (settings.env, settings.cookie_secure, settings.log_format) == ("production", True, "json")
                    assert [str(n) for n in settings.trusted_networks] == ["10.0.0.0/8"]
                    assert settings.resolve_jwt_secret() == "x" * 40
        assert used_keys == SECRET_KEYS
        readme = (DEPLOY / "README.md").read_text()
        for key in SECRET_KEYS:
            assert f"--from-literal={key}=" in readme, key


# ---------------------------------------------------------------------------------------------- ECS


def aws_request_errors(service: str, operation: str, params: dict[str, Any]) -> str:
    """botocore's report for ``params`` as the input of ``service.operation`` ('' when valid)."""
    model = botocore.model.ServiceModel(botocore.loaders.Loader().load_service_model(service, "service-2"), service)
    report = botocore.validate.ParamValidator().validate(params, model.operation_model(operation).input_shape)
    text: str = report.generate_report()
    return text


class TestEcs:
    @pytest.mark.parametrize(
        ("filename", "service", "operation"),
        [
            ("task-definition.json", "ecs", "RegisterTaskDefinition"),
            ("scalable-target.json", "application-autoscaling", "RegisterScalableTarget"),
            ("scaling-policy.json", "application-autoscaling", "PutScalingPolicy"),
        ],
    )
    def test_files_are_valid_aws_requests(self, filename: str, service: str, operation: str) -> None:
        assert aws_request_errors(service, operation, load_json(ECS / filename)) == ""

    def test_scaling_is_the_seeds(self) -> None:
        target = load_json(ECS / "scalable-target.json")
        policy = load_json(ECS / "scaling-policy.json")
        assert (target["MinCapacity"], target["MaxCapacity"]) == (SEED_MIN_REPLICAS, SEED_MAX_REPLICAS)
        assert policy["PolicyType"] == "TargetTrackingScaling"
        tracking = policy["TargetTrackingScalingPolicyConfiguration"]
        assert tracking["TargetValue"] == 70.0 and isinstance(tracking["TargetValue"], float)
        assert tracking["TargetValue"] == SEED_CPU_PERCENT
        assert tracking["PredefinedMetricSpecification"] == {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}
        for key in ("ServiceNamespace", "ResourceId", "ScalableDimension"):
            assert policy[key] == target[key], key
        assert target["ServiceNamespace"] == "ecs"
        assert target["ScalableDimension"] == "ecs:service:DesiredCount"
        assert re.fullmatch(r"service/[\w-]+/[\w-]+", target["ResourceId"])

    def test_task_definition(self, monkeypatch: pytest.MonkeyPatch) -> None:
        task = load_json(ECS / "task-definition.json")
        assert task["requiresCompatibilities"] == ["FARGATE"] and task["networkMode"] == "awsvpc"
        cpu, memory = int(task["cpu"]), int(task["memory"])
        assert memory in FARGATE_SIZES[cpu], (cpu, memory)
        [container] = task["containerDefinitions"]
        assert container["essential"] is True
        assert container["command"] == SERVE_ARGV
        parse_cli(container["command"])
        assert container["healthCheck"]["command"] == ["CMD", *healthcheck_argv()]
        assert int(container["user"].split(":")[0]) == APP_UID
        assert container["readonlyRootFilesystem"] is True
        [mount] = container["mountPoints"]
        assert mount["containerPath"] == "/tmp" and mount["sourceVolume"] in {v["name"] for v in task["volumes"]}
        assert [p["containerPort"] for p in container["portMappings"]] == [API_PORT]
        environment = {e["name"]: e["value"] for e in container["environment"]}
        secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
        assert set(secrets) == SECRET_SETTINGS
        assert not set(environment) & SECRET_SETTINGS
        assert set(environment) | set(secrets) <= settings_env_names()
        env = {**environment, **dict.fromkeys(secrets, "x" * 40)}
        env["TASKHUB_DATABASE_URL"] = "postgresql+asyncpg://taskhub:pw@db:5432/taskhub"
        settings = settings_from(env, monkeypatch)
        assert (settings.env, settings.cookie_secure) == ("production", True)
        assert settings.database_pool_size + settings.database_max_overflow == 15
