"""The Dockerfile, read as text (tests/deploy/test_image.py runs the built image; .ci/image builds it).

What is checked is what an image review would check: two stages, a final stage that only copies
the built environment and runs as a numeric non-root user with ``mfrm run`` as its entry point,
the version label equal to the package's version, no build tools or test dependencies in the
final stage, and agreement with the Helm chart (user id, state volume, metrics port); and what lets
the same file build on a machine that can pull nothing: the base image and the package indexes as
build arguments, no BuildKit-only syntax, and the wheelhouse of scripts/build-image.sh holding what
the Dockerfile installs.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from controller.commands.main import main as mfrm_cli
from controller.settings import DaemonSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BUILD_SCRIPT = ROOT / "scripts" / "build-image.sh"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CHART_VALUES = yaml.safe_load((ROOT / "deploy" / "helm" / "mfrm" / "values.yaml").read_text())

#: What must never be installed or run in the final stage.
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "python3-dev", "cmake", "git", "curl", "wget")
TEST_PACKAGES = ("pytest", "hypothesis", "import-linter", "ruff", "[test]", "[dev]", "helm-python-sdk",
                 "kubernetes-validate")


@dataclass
class Stage:
    """One FROM ... AS name block of the Dockerfile."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for kw, arguments in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) of a Dockerfile; continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", arguments.strip(), flags=re.IGNORECASE)
            assert match, f"every stage is named: FROM {arguments}"
            stages.append(Stage(match.group(1), match.group(2)))
        elif not stages:
            if keyword == "ARG":
                name, _, default = arguments.partition("=")
                global_args[name.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append((keyword, arguments.strip()))
    return global_args, stages


GLOBAL_ARGS, STAGES = parse_dockerfile(DOCKERFILE.read_text())
FINAL = STAGES[-1]


def arg_defaults(stage: Stage) -> dict[str, str]:
    defaults = {}
    for arguments in stage.all("ARG"):
        name, _, default = arguments.partition("=")
        defaults[name.strip()] = default.strip().strip('"')
    return defaults


def test_the_image_is_built_in_one_stage_and_run_from_another() -> None:
    assert [s.name for s in STAGES] == ["build", "runtime"]
    assert all(stage.base == "${PYTHON_IMAGE}" for stage in STAGES)
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", GLOBAL_ARGS["PYTHON_IMAGE"])


def test_the_final_stage_only_copies_the_environment_and_the_app_from_the_build_stage() -> None:
    copies = FINAL.all("COPY")
    assert copies == ["--from=build /opt/mfrm /opt/mfrm", "--from=build /app /app"]


@pytest.mark.parametrize("tool", BUILD_TOOLS + TEST_PACKAGES, ids=BUILD_TOOLS + TEST_PACKAGES)
def test_the_final_stage_installs_no_build_tool_or_test_dependency(tool: str) -> None:
    for arguments in FINAL.all("RUN"):
        words = shlex.split(arguments.replace(";", " ").replace("&&", " "))
        assert tool not in words, f"final stage runs {tool}: {arguments}"
        assert "install" not in words or "apt-get" not in words and "pip" not in words, arguments


@pytest.mark.parametrize("package", TEST_PACKAGES, ids=TEST_PACKAGES)
def test_the_build_stage_installs_no_test_dependency(package: str) -> None:
    for arguments in STAGES[0].all("RUN"):
        assert package not in arguments, arguments


def test_the_build_stage_leaves_no_packaging_tools_in_the_environment() -> None:
    (install,) = [a for a in STAGES[0].all("RUN") if "pip install --no-deps --no-compile -e /app" in a]
    assert "pip uninstall -y pip setuptools wheel" in install


def test_the_daemon_runs_as_a_numeric_non_root_user_that_the_chart_also_names() -> None:
    (user,) = FINAL.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    assert CHART_VALUES["securityContext"]["runAsUser"] == int(uid)
    assert CHART_VALUES["securityContext"]["runAsGroup"] == int(gid)
    (created,) = [a for a in FINAL.all("RUN") if "useradd" in a]
    assert f"--uid {uid}" in created and "--shell /usr/sbin/nologin" in created


def test_the_entry_point_is_mfrm_run_in_exec_form() -> None:
    (entrypoint,) = FINAL.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["mfrm", "run"]
    assert PYPROJECT["project"]["scripts"]["mfrm"] == "controller.commands.main:main"


def test_mfrm_run_is_a_command_of_the_mfrm_cli() -> None:
    result = CliRunner().invoke(mfrm_cli, ["run", "--help"])
    assert result.exit_code == 0, result.output
    assert "--dry-run" in result.output and "--config" in result.output


def test_the_version_label_is_the_package_version() -> None:
    labels = " ".join(FINAL.all("LABEL"))
    assert 'org.opencontainers.image.version="${MFRM_VERSION}"' in labels
    assert arg_defaults(FINAL)["MFRM_VERSION"] == PYPROJECT["project"]["version"]


def test_the_chart_deploys_the_same_version() -> None:
    chart = yaml.safe_load((ROOT / "deploy" / "helm" / "mfrm" / "Chart.yaml").read_text())
    assert chart["appVersion"] == PYPROJECT["project"]["version"]


def test_torch_is_the_pinned_cpu_capable_version_of_pyproject() -> None:
    pins = [d for d in PYPROJECT["project"]["dependencies"] if d.replace(" ", "").startswith("torch==")]
    assert pins == [f"torch=={arg_defaults(STAGES[0])['TORCH_VERSION']}"]
    assert arg_defaults(STAGES[0])["TORCH_INDEX_URL"] == "", "the CPU index is passed at build time, not baked in"


def test_writable_state_lives_only_under_the_volume_the_chart_mounts() -> None:
    assert FINAL.all("VOLUME") == ['["/var/lib/mfrm"]']
    assert FINAL.all("WORKDIR") == ["/var/lib/mfrm"]
    assert CHART_VALUES["persistence"]["mountPath"] == "/var/lib/mfrm"
    env = " ".join(FINAL.all("ENV"))
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "NUMBA_CACHE_DIR=/tmp/", "MPLCONFIGDIR=/tmp/", "HOME=/tmp"):
        assert setting in env, setting


def test_the_exposed_port_is_the_daemons_default_metrics_port() -> None:
    default = DaemonSettings.model_fields["metrics_port"].default
    assert FINAL.all("EXPOSE") == [str(default)]
    assert CHART_VALUES["metrics"]["port"] == default
    (healthcheck,) = FINAL.all("HEALTHCHECK")
    assert f"127.0.0.1:{default}/healthz" in healthcheck


@pytest.mark.parametrize("pattern", [".git", "tests", "runs", ".venv", "**/__pycache__", "deploy", ".env*"],
                         ids=["git", "tests", "runs", "venv", "bytecode", "deploy", "env-files"])
def test_the_build_context_leaves_out_local_state_and_tests(pattern: str) -> None:
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert pattern in ignored


def test_everything_the_image_copies_is_in_the_build_context() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for arguments in STAGES[0].all("COPY"):
        *sources, _destination = arguments.split()
        for source in sources:
            top = source.rstrip("/").split("/")[0]
            assert top not in ignored, f"{source} is copied but excluded by .dockerignore"
            assert (ROOT / source).exists(), f"{source} is copied but does not exist"


def test_the_base_image_is_a_build_argument_whose_default_is_the_public_slim_python_image() -> None:
    # The default serves an operator anywhere; a machine that can pull nothing passes a local base.
    assert GLOBAL_ARGS["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    script = BUILD_SCRIPT.read_text()
    assert '--build-arg "PYTHON_IMAGE=$MFRM_BASE_IMAGE"' in script


def test_the_build_stage_calls_python3_which_both_the_official_and_a_debian_made_base_have() -> None:
    runs = " ".join(STAGES[0].all("RUN"))
    assert "python3 -m venv /opt/mfrm" in runs
    assert not re.search(r"(^|[\s;&|])python -m venv", runs)


def test_the_package_index_is_a_build_argument_that_is_unset_unless_passed() -> None:
    # Unset, pip uses its own default index; an empty value would be an invalid index URL.
    assert "PIP_INDEX_URL" in STAGES[0].all("ARG")
    script = BUILD_SCRIPT.read_text()
    assert '--build-arg "PIP_INDEX_URL=$INDEX_URL"' in script
    assert '--build-arg "TORCH_INDEX_URL=$INDEX_URL"' in script


def test_the_dockerfile_names_no_frontend_image_and_builds_with_the_classic_builder() -> None:
    first = DOCKERFILE.read_text().splitlines()[0]
    assert not first.lower().replace(" ", "").startswith("#syntax="), first
    assert "DOCKER_BUILDKIT=0 docker build --network host" in BUILD_SCRIPT.read_text()


def _requirement_names(requirements: list[str]) -> dict[str, str]:
    return {re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0].lower(): r for r in requirements}


def test_the_dependencies_are_installed_from_pyproject_before_the_source_is_copied() -> None:
    # A change of the source then reuses the layer of the dependencies (torch among them).
    order = [(kw, args) for kw, args in STAGES[0].instructions if kw in ("COPY", "RUN")]
    dependencies = next(i for i, (kw, args) in enumerate(order) if "pip install -r /tmp/requirements.txt" in args)
    assert [args for kw, args in order[:dependencies] if kw == "COPY"] == ["pyproject.toml ./"]
    assert '["project"]["dependencies"]' in order[dependencies][1]
    assert any("pip install --no-deps --no-compile -e /app" in args for kw, args in order[dependencies + 1:])


def test_the_wheelhouse_holds_what_the_dockerfile_installs_beside_the_project() -> None:
    (install,) = [a for a in STAGES[0].all("RUN") if "pip install -r /tmp/requirements.txt" in a]
    named = shlex.split(install.split("pip install -r /tmp/requirements.txt", 1)[1].split("&&", 1)[0])
    (line,) = [x for x in BUILD_SCRIPT.read_text().splitlines() if x.startswith("DOCKERFILE_EXTRA_REQUIREMENTS=")]
    downloaded = shlex.split(line.split("=", 1)[1].strip("()"))
    assert named == downloaded
    # and pyproject's own bounds do not exclude them (the wheelhouse resolves both together)
    assert set(_requirement_names(named)) <= set(_requirement_names(PYPROJECT["project"]["dependencies"]))


def test_the_environment_the_runtime_stage_copies_does_not_change_with_the_readme_or_the_build_time() -> None:
    # The copy of /opt/mfrm (1.5 GB) is reused only while its bytes are the same as at the last build.
    copied = [args.split()[0] for args in STAGES[0].all("COPY")]
    assert "README.md" not in copied
    assert any(args.startswith("echo ") and args.endswith("> README.md") for args in STAGES[0].all("RUN"))
    (install,) = [a for a in STAGES[0].all("RUN") if "-e /app" in a]
    assert "--no-compile" in install
