"""The directory ``opensergo-run`` puts first on PYTHONPATH so that Python imports its
``sitecustomize`` module at start-up (see :mod:`opensergo.launcher`)."""
