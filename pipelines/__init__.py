"""KFP pipelines of gmpo-kfp (shipped as ``gmpo_kfp.pipelines``)."""
