"""Our container images: what each one holds, and how they are built and checked.

- :mod:`~gmpo_kfp.containers.specs`: the images (``runtime``, ``trainer``, ``eval``) and
  their variants (``cuda``, ``cpu``): bases, what is installed, labels. The one place
  those are written; ``images/Dockerfile`` takes them as build arguments.
- :mod:`~gmpo_kfp.containers.pip_install`: run inside the build, standard library only.
- :mod:`~gmpo_kfp.containers.build`: ``gmpo images build``: a wheelhouse, a local Debian
  base where no registry is reachable, the builds, the checks, a summary.
- :mod:`~gmpo_kfp.containers.engine`: a private Docker daemon (root, no network, own
  folders), started and stopped by its pid: what the tests and CI build and run with.
"""
