"""The container image and the Kubernetes manifests, tested as far as this
machine can (it pulls no images): the Dockerfile's metadata; its install
step (deploy/image.sh, the same script) in a fresh virtualenv, then a run
configured by environment variables alone from a folder like the image's
/mnt/aiotest; and the Kustomize overlay rendered by kubectl and validated
against the Kubernetes schemas offline (kubernetes-validate)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, DemoTarget

REQUIRED = bool(os.environ.get("AIOTEST_REQUIRE_DEPLOY_TOOLS"))


def need(ok: bool, why: str) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments),
    continuation lines joined and comments dropped."""
    stages: list[list[tuple[str, str]]] = []
    joined = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), rest.strip()))
    return stages


def test_the_image_runs_aiotest_as_a_non_root_user_with_its_ports() -> None:
    build, runtime = dockerfile_stages()
    assert build[0][0] == "FROM" and build[0][1].endswith(" AS build")
    assert ("RUN", "sh deploy/image.sh wheel /wheels") in build
    runs = [args for op, args in runtime if op == "RUN"]
    assert any("image.sh install /wheels" in r for r in runs), runs
    last = {op: args for op, args in runtime}  # the last of each instruction
    assert last["USER"] not in ("root", "0") and last["USER"].isdigit()
    assert any("useradd --uid " + last["USER"] in r for r in runs)
    assert last["ENTRYPOINT"] == '["aiotest"]'
    assert last["WORKDIR"] == "/mnt/aiotest"
    assert set(last["EXPOSE"].split()) == {"5557", "8089"}


def test_the_image_install_step_in_a_fresh_virtualenv(
    demo_target: DemoTarget, tmp_path: Path
) -> None:
    wheels = sorted((ROOT / "dist").glob("aiotest-*.whl"))
    need(bool(wheels), "no wheel in dist/: run `make wheel`")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if not k.startswith("AIOTEST_")}
    env.pop("VIRTUAL_ENV", None)
    install = subprocess.run(
        ["sh", str(ROOT / "deploy" / "image.sh"), "install", str(wheels[-1].parent)],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    assert install.stdout.strip().startswith("aiotest")
    # As the image runs: the aiotestfile from the working folder, and the
    # test set by AIOTEST_* variables alone.
    mounted = tmp_path / "mnt-aiotest"
    mounted.mkdir()
    (mounted / "aiotestfile.py").write_text(
        "from aiotest import AsyncHttpUser, task, constant\n"
        "class Hello(AsyncHttpUser):\n"
        "    wait_time = constant(0.05)\n"
        "    @task\n"
        "    async def hello(self):\n"
        "        await self.session.get('/hello')\n"
    )
    run = subprocess.run(
        [str(venv / "bin" / "aiotest")],
        env={**env, "AIOTEST_HEADLESS": "true", "AIOTEST_USERS": "2", "AIOTEST_ITERATIONS": "10",
             "AIOTEST_HOST": demo_target.url, "AIOTEST_NO_WEB_SERVER": "true"},
        cwd=mounted, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert demo_target.counts()["requests"]["GET /hello"] == 10


def rendered_overlay() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    need(kubectl is not None, "kubectl is not installed (apt-get install kubectl)")
    out = subprocess.run(
        [str(kubectl), "kustomize", str(ROOT / "deploy" / "kubernetes" / "overlays" / "example")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def base_name(doc: dict[str, Any]) -> str:
    """A document's name, without the hash Kustomize gives generated
    ConfigMaps and Secrets."""
    name: str = doc["metadata"]["name"]
    return name.rsplit("-", 1)[0] if doc["kind"] in ("ConfigMap", "Secret") else name


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_kubernetes_overlay_renders_and_validates(tmp_path: Path) -> None:
    docs = rendered_overlay()
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    validate = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).with_name("kubernetes-validate")
    )
    need(os.path.exists(validate), "kubernetes-validate is not installed (pip install)")
    checked = subprocess.run(
        [validate, "--strict", str(rendered)], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(" passed ") == len(docs) == 5, checked.stdout
    by = {(d["kind"], base_name(d)): d for d in docs}
    master = by[("Job", "aiotest-master")]["spec"]
    worker = by[("Job", "aiotest-worker")]["spec"]
    service = by[("Service", "aiotest-master")]["spec"]
    # A headless master whose exit code is the Job's: no restarts.
    assert master["template"]["spec"]["restartPolicy"] == "Never" and master["backoffLimit"] == 0
    m = master["template"]["spec"]["containers"][0]
    menv = env_of(m)
    assert menv["AIOTEST_MASTER"] == "true" and menv["AIOTEST_HEADLESS"] == "true"
    assert menv["AIOTEST_EXPECT_WORKERS"] == str(worker["parallelism"]) == "4"
    assert menv["AIOTEST_SECRET"] == {"secretKeyRef": {"name": by[("Secret", "aiotest-secret")]["metadata"]["name"], "key": "secret"}}  # fmt: skip
    assert m["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert m["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert m["resources"]["requests"]
    # Workers find the master by its Service, and leave with its run.
    w = worker["template"]["spec"]["containers"][0]
    wenv = env_of(w)
    assert wenv["AIOTEST_MASTER_HOST"] == by[("Service", "aiotest-master")]["metadata"]["name"]
    assert wenv["AIOTEST_WORKER_EXIT_WITH_MASTER"] == "true"
    assert w["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["port"] for p in service["ports"]} == {5557, 8089}
    assert service["publishNotReadyAddresses"] is True
    # Every option is an environment variable: no command-line arguments.
    assert "args" not in m and "args" not in w and "command" not in m
    # The aiotestfile comes from the ConfigMap, mounted where the image reads it.
    mount = m["volumeMounts"][0]
    assert mount["mountPath"] == "/mnt/aiotest"
    config_map = by[("ConfigMap", "aiotest-file")]
    assert "aiotestfile.py" in config_map["data"]
