"""KFP component: a data source -> train and validation verl RL parquet (Dataset artifacts)."""

from kfp import dsl

from gmpo_kfp.settings import IMAGES


@dsl.component(install_kfp_package=False, base_image=IMAGES["runtime"])
def prepare_data(
    source: str,
    train_data: dsl.Output[dsl.Dataset],
    val_data: dsl.Output[dsl.Dataset],
    source_uri: str = "",
    val_uri: str = "",
    template: str = "",
    levels: str = "",
    limit: int = 0,
    val_fraction: float = 0.1,
    seed: int = 0,
):
    """Import ``source`` (arithmetic, gsm8k, math, dapo-math-17k, aime-2024, math_lvl3to5_8k)."""
    from gmpo_kfp.workflow.stages import prepare_data as run

    meta = run(
        source=source,
        train_path=train_data.path,
        val_path=val_data.path,
        source_uri=source_uri,
        val_uri=val_uri,
        template=template,
        levels=levels,
        limit=limit,
        val_fraction=val_fraction,
        seed=seed,
    )
    train_data.metadata.update(meta["train"])
    val_data.metadata.update(meta["val"])
