"""The KFP side: the pipeline's stages as plain functions, and compiling, running and submitting it.

:mod:`.stages` holds the four stages (prepare data, train, evaluate, register) that
the components in ``components/`` call, one function each; :mod:`.gate` decides
whether a new model beats production; :mod:`.registry` is the register stage's model
registry (a folder or bucket, and the Kubeflow Model Registry) and :mod:`.lineage`
what each version came from; :mod:`.kfp_runs` compiles the pipeline, runs it with ``kfp.local`` and
submits it; :mod:`.run_log` keeps a local run's console a report and its full log in a file.
"""
