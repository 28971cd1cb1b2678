"""The run system (public names: ``difftransport.runs``): TOML configs, the ensemble runner, the run directory store
and plots. Reads and writes files; the physics it runs lives in ``difftransport._core``."""
