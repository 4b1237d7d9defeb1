"""The dashboard against what a pipeline run exports: every panel's query finds series.

The whole pipeline runs through kfp.local with a real Pushgateway (training pushes from
the train step, Pass@1 from evaluate, the version from register), the Pushgateway is
scraped, and each panel's query is evaluated on those series for the dashboard's
``model`` variable, whose values come from its own query. A label that differs between
the stages (the config's name for training, ``model_name`` for evaluation) leaves a
panel empty, and fails here.

The queries are plain selectors (``name{model=~"$model"}``); a query of another shape
fails the test until the evaluation below learns it (no Prometheus server runs here).
"""

from __future__ import annotations

import re

from gmpo_kfp import metrics as M
from gmpo_kfp.cluster import manifests
from gmpo_kfp.workflow.kfp_runs import run_local
from tests.kfp.test_components import SHORT
from tests.support.pushgateway import pushgateway, scrape

SELECTOR = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{model=~"\$model"\}$')
VARIABLE = re.compile(r"^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*), model\)$")
#: series only a training process with a GPU exports (none on this machine's CPU)
GPU_ONLY = {M.PROM_GPU_MEMORY}


def test_every_dashboard_panel_finds_the_series_a_pipeline_run_pushes(tmp_path):
    with pushgateway() as gateway:
        result = run_local(
            tmp_path / "out",
            overrides=SHORT,
            params=[f"pushgateway={gateway}", "model_name=dash-model", "threshold=0.0"],
        )
        assert result.registered_version == 1
        families = scrape(f"{gateway}/metrics")
    series = [s for f in families for s in f.samples]

    board = manifests.dashboard()
    (variable,) = [v for v in board["templating"]["list"] if v["name"] == "model"]
    source = VARIABLE.match(variable["query"])
    assert source, f"the model variable's query {variable['query']!r} is not label_values(...)"
    models = {s.labels["model"] for s in series if s.name == source.group(1)}
    assert models == {"dash-model"}, models

    empty = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            match = SELECTOR.match(target["expr"])
            assert match, f"panel {panel['title']!r}: query {target['expr']!r} is not a selector"
            name = match.group(1)
            found = [s for s in series if s.name == name and s.labels.get("model") in models]
            if not found and name not in GPU_ONLY:
                empty.append(f"{panel['title']}: {target['expr']}")
    assert not empty, f"panels with no series for model {models}: {empty}"
