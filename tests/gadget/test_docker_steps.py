"""The Gadgetron Docker image's install steps, checked without an engine: it builds as the base
image's user (uid 1000) and keeps the Gadgetron env's pins, which pyproject must admit.

scripts/check_gadgetron_env.sh replays the same steps for real (a venv owned by uid 1000, the
pins, the project installed as that user, the gadget driven through gadgetron-python)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "docker" / "Dockerfile.gadgetron").read_text()
# Gadgetron's environment.yml (the conda env "gadgetron" of its rt images): python=3.10,
# numpy=1.26.4, ismrmrd-python=1.14.0, h5py=3.7.0, gadgetron-python=1.4.1.
GADGETRON_ENV_PINS = {"numpy": "1.26.4", "ismrmrd": "1.14.0", "h5py": "3.7.0", "gadgetron": "1.4.1"}


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    return [
        (line.split()[0].upper(), line.split(None, 1)[1])
        for line in joined.splitlines()
        if line.strip()
    ]


def _constraints() -> dict[str, str]:
    lines = (ROOT / "docker" / "gadgetron_env_constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {name.strip(): version.strip() for name, version in pins}


def test_builds_on_the_published_runtime_image_as_its_user() -> None:
    steps = _instructions(DOCKERFILE)
    assert ("ARG", "BASE_IMAGE=ghcr.io/gadgetron/gadgetron/ubuntu22.04_rt_nocuda:latest") in steps
    assert "ghcr.io/gadgetron/gadgetron/ubuntu22.04_rt_cuda:latest" in DOCKERFILE
    users = [(i, args) for i, (kind, args) in enumerate(steps) if kind == "USER"]
    assert users and all(args == "${USER_UID}" for _, args in users)  # never root
    assert ("ARG", "USER_UID=1000") in steps
    first_run = next(i for i, (kind, _) in enumerate(steps) if kind == "RUN")
    assert users[0][0] < first_run
    copies = [args for kind, args in steps if kind == "COPY"]
    assert copies and all(args.startswith("--chown=${USER_UID}:conda ") for args in copies)


def test_installs_keep_the_gadgetron_env_pins_and_pyproject_admits_them() -> None:
    assert _constraints() == GADGETRON_ENV_PINS
    runs = " ".join(args for kind, args in _instructions(DOCKERFILE) if kind == "RUN")
    installs = runs.split("pip install")[1:]
    assert len(installs) == 2
    assert all("-c ${SRC}/gadgetron_env_constraints.txt" in step for step in installs)
    assert "torch==${TORCH_VERSION}" in installs[0] and "--index-url ${TORCH_INDEX}" in installs[0]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = {Requirement(r).name.lower(): Requirement(r) for r in project["dependencies"]}
    for name, version in GADGETRON_ENV_PINS.items():
        assert requirements[name].specifier.contains(version), (name, version, requirements[name])
    assert Requirement("x" + project["requires-python"]).specifier.contains("3.10")
