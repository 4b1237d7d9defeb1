"""No credentials in images, manifests, workflows, logs, metrics or registered manifests.

Static: every tracked file that ships to a cluster or a registry (images, manifests, the
compiled pipeline, the workflow, the kind script) is scanned for credential shapes.
Dynamic: a short prepare -> train -> register run against a real S3 on loopback, with
distinctive keys in the environment, and the /metrics endpoint on; its logs, metrics
file, scraped metrics, outputs and the registry's manifest must not contain them.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

from gmpo_kfp.storage import open_store, s3_client
from gmpo_kfp.workflow import stages
from tests.integration.test_stages_s3 import SHORT
from tests.support.s3server import free_port, moto_server, s3_env

ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY = "AKIAGMPOKFPTESTKEY42"
SECRET_KEY = "gmpoSecretKeyThatMustNeverLeak/0123456789"
PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "secret assignment": re.compile(
        r"(?i)(secret_access_key|password|passwd|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{16,}"
    ),
}
SHIPPED = ("images/", "manifests/", "pipelines/", ".github/", "tests/e2e/", ".dockerignore")


def shipped_files() -> list[Path]:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / f for f in tracked if f.startswith(SHIPPED) and (ROOT / f).is_file()]


def leaks(text: str) -> list[str]:
    return [name for name, pattern in PATTERNS.items() if pattern.search(text)]


def test_nothing_that_ships_holds_a_credential():
    files = shipped_files()
    assert any(f.name == "Dockerfile" for f in files) and any(f.suffix == ".yaml" for f in files)
    found = {str(f.relative_to(ROOT)): leaks(f.read_text(errors="ignore")) for f in files}
    assert not {k: v for k, v in found.items() if v}


def test_the_scan_finds_a_planted_credential():
    assert leaks(f"aws_access_key_id = {ACCESS_KEY}") == ["AWS access key id"]
    assert leaks(f"AWS_SECRET_ACCESS_KEY: '{SECRET_KEY}'") == ["secret assignment"]


def test_a_run_logs_exports_and_registers_no_credential(tmp_path, capfd, monkeypatch):
    port = free_port()
    with moto_server() as url, s3_env(url):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        s3_client().create_bucket(Bucket="creds")
        stages.prepare_data(
            source="arithmetic",
            limit=32,
            train_path=str(tmp_path / "t.parquet"),
            val_path=str(tmp_path / "v.parquet"),
        )
        scraped = []

        class Scrape:  # a TrainerCallback-shaped object: scrape /metrics while training
            def __getattr__(self, name):
                return lambda *a, **k: None

            def on_step_end(self, *a, **k):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
                    scraped.append(r.read().decode())

        from gmpo_kfp.config import apply_overrides
        from gmpo_kfp.engines.training import train
        from gmpo_kfp.engines.trl import TRLEngine
        from gmpo_kfp.presets import load_preset

        config = apply_overrides(
            load_preset("tiny-cpu"),
            [
                *SHORT,
                "trainer.total_steps=2",
                f"data.train_files={tmp_path / 't.parquet'}",
                f"data.val_files={tmp_path / 'v.parquet'}",
                f"trainer.output_dir={tmp_path / 'w'}",
                f"monitoring.metrics_port={port}",
                "monitoring.metrics_host=127.0.0.1",
            ],
        )
        result = train(config, engine=TRLEngine(callbacks=[Scrape()]), progress=False)
        out = stages.train_stage(
            preset="tiny-cpu",
            overrides=[*SHORT, "trainer.total_steps=2"],
            train_path=str(tmp_path / "t.parquet"),
            val_path=str(tmp_path / "v.parquet"),
            output_uri="s3://creds/runs/r1",
            work_dir=str(tmp_path / "w2"),
            curves_path=str(tmp_path / "curves.md"),
        )
        reg = stages.register_stage(
            model_uri=out["model_uri"],
            registry_uri="s3://creds/registry",
            name="tiny",
            work_dir=str(tmp_path / "g"),
            metrics={"pass_at_1": 0.1},
            config=out["config"],
        )
        manifest = open_store("s3://creds/registry").get_bytes(
            f"tiny/{reg['version']}/manifest.json"
        )
    logs = capfd.readouterr()
    texts = {
        "logs": logs.out + logs.err,
        "metrics file": result.metrics_file.read_text(),
        "scraped metrics": "".join(scraped),
        "train outputs": json.dumps(out, default=str),
        "curves": (tmp_path / "curves.md").read_text(),
        "registry manifest": manifest.decode(),
    }
    assert scraped and "gmpo_step" in scraped[-1]
    for what, text in texts.items():
        assert ACCESS_KEY not in text and SECRET_KEY not in text, what
        assert not leaks(text), (what, leaks(text))
