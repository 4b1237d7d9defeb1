"""The ``gmpo_training`` pipeline: prepare -> train -> evaluate -> (gate) register.

No logic here: the stages live in :mod:`gmpo_kfp.workflow.stages`, the cluster constants in
:mod:`gmpo_kfp.settings`; this module wires them and sets what Kubernetes needs
(GPUs, node selector, toleration, S3 secret, a memory-backed ``/dev/shm``, retries,
no caching where inputs can change behind the same parameters, Kueue's labels on the
GPU steps when compiled for a queue).
"""

from collections.abc import Mapping

from gmpo_kfp.components.evaluate import evaluate
from gmpo_kfp.components.prepare_data import prepare_data
from gmpo_kfp.components.register_model import register_model
from gmpo_kfp.components.train import train
from kfp import dsl, kubernetes

from gmpo_kfp import settings
from gmpo_kfp.config import KueueConfig
from gmpo_kfp.presets import DEFAULT_PRESET
from gmpo_kfp.workflow.gate import DEFAULT_MARGIN, DEFAULT_TOLERANCE


def _s3_secret(task: dsl.PipelineTask) -> None:
    kubernetes.use_secret_as_env(task, settings.S3_SECRET, settings.S3_SECRET_ENV, optional=True)


def _gpu(task: dsl.PipelineTask, gpus, resources: dict) -> None:
    task.set_accelerator_type(settings.ACCELERATOR).set_accelerator_limit(gpus)
    task.set_cpu_request(resources["cpu"]).set_memory_request(resources["memory"])
    for key, value in settings.GPU_NODE_SELECTOR.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    kubernetes.add_toleration(task, **settings.GPU_TOLERATION)
    kubernetes.empty_dir_mount(
        task,
        volume_name=settings.SHM_VOLUME,
        mount_path="/dev/shm",
        medium="Memory",
        size_limit=settings.SHM_SIZE,
    )


def _image(task: dsl.PipelineTask, image: str) -> None:
    """Run ``task`` in ``image`` and tell it which (the registry's lineage records it)."""
    task.set_container_image(image).set_env_variable(settings.IMAGE_ENV, image)


def _kueue(task: dsl.PipelineTask, kueue: KueueConfig) -> None:
    for key, value in kueue.labels().items():
        kubernetes.add_pod_label(task, label_key=key, label_value=value)


def build_pipeline(images: Mapping[str, str] = settings.IMAGES, kueue: KueueConfig | None = None):
    """The pipeline with its steps in ``images`` (``settings.IMAGES``; ``CPU_IMAGES`` for
    the pipeline in containers on a CPU, or a mirror's references). With ``kueue`` (a
    queue), the train and evaluate pods carry its labels, and a multi-node RayJob the
    train step creates goes to the same queue. Pod labels are fixed when the pipeline
    is compiled: KFP cannot take them from run parameters."""
    kueue = kueue or KueueConfig()

    @dsl.pipeline(
        name=settings.PIPELINE_NAME, description="GMPO training: prepare, train, evaluate, register"
    )
    def gmpo_training(
        preset: str = DEFAULT_PRESET,
        overrides: list = [],  # noqa: B006 - KFP takes defaults as literals
        source: str = "arithmetic",
        source_uri: str = "",
        val_uri: str = "",
        eval_uris: list = [],  # noqa: B006
        threshold: float = 0.3,
        tolerance: float = DEFAULT_TOLERANCE,
        margin: float = DEFAULT_MARGIN,
        model_name: str = "gmpo-tiny",
        registry_uri: str = settings.REGISTRY_URI,
        output_root: str = settings.OUTPUT_ROOT,
        engine: str = "",
        gpus: int = settings.TRAIN_RESOURCES["gpus"],
        protocol: str = "greedy",
        max_new_tokens: int = 1024,
        model_registry_address: str = "",
        pushgateway: str = "",
        register_weights: str = "merged",
    ):
        prep = prepare_data(source=source, source_uri=source_uri, val_uri=val_uri)
        prep.set_display_name("prepare data")
        _image(prep, images["runtime"])
        prep.set_cpu_request(settings.CPU_RESOURCES["cpu"])
        prep.set_memory_request(settings.CPU_RESOURCES["memory"])
        _s3_secret(prep)
        prep.set_caching_options(False)  # the same source URI may hold newer data

        trained = train(
            preset=preset,
            overrides=overrides,
            output_root=output_root,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            train_data=prep.outputs["train_data"],
            val_data=prep.outputs["val_data"],
            engine=engine,
            pushgateway=pushgateway,
            model_name=model_name,
            kueue_queue=kueue.queue or "",
            kueue_priority_class=kueue.priority_class or "",
        )
        trained.set_display_name("train (GMPO)")
        _image(trained, images["trainer"])
        _gpu(trained, gpus, settings.TRAIN_RESOURCES)
        _s3_secret(trained)
        _kueue(trained, kueue)
        # the work folder: checkpoints survive a retry, and a multi-node RayJob's ranks share it
        kubernetes.mount_pvc(
            trained, pvc_name=settings.SHARED_CLAIM, mount_path=settings.SHARED_MOUNT
        )
        trained.set_retry(
            num_retries=settings.TRAIN_RETRIES,
            backoff_duration=settings.TRAIN_BACKOFF,
            backoff_factor=settings.TRAIN_BACKOFF_FACTOR,
        )
        trained.set_caching_options(False)

        scored = evaluate(
            model=trained.outputs["model"],
            eval_data=prep.outputs["val_data"],
            threshold=threshold,
            protocol=protocol,
            max_new_tokens=max_new_tokens,
            extra_eval_uris=eval_uris,
            model_name=model_name,
            pushgateway=pushgateway,
            registry_uri=registry_uri,
            tolerance=tolerance,
            margin=margin,
        )
        scored.set_display_name("evaluate (Pass@1)")
        _image(scored, images["eval"])
        _gpu(scored, settings.EVAL_RESOURCES["gpus"], settings.EVAL_RESOURCES)
        _s3_secret(scored)
        _kueue(scored, kueue)
        scored.set_caching_options(False)

        with dsl.If(scored.outputs["Output"] == True, name="pass@1-gate"):  # noqa: E712
            reg = register_model(
                model=trained.outputs["model"],
                registry_uri=registry_uri,
                name=model_name,
                eval_metrics=scored.outputs["metrics"],
                config_json=trained.outputs["Output"],
                train_lineage=trained.outputs["lineage"],
                eval_lineage=scored.outputs["lineage"],
                source_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                model_registry_address=model_registry_address,
                pushgateway=pushgateway,
                weights=register_weights,
            )
            reg.set_display_name("register model")
            _image(reg, images["runtime"])
            reg.set_cpu_request(settings.CPU_RESOURCES["cpu"])
            reg.set_memory_request(settings.CPU_RESOURCES["memory"])
            _s3_secret(reg)
            reg.set_caching_options(False)

    return gmpo_training


gmpo_training = build_pipeline()
