"""The run system: TOML configs (one validating engine), the chunked, sharded, resumable ensemble runner, the run
directory store and the plots of stored runs. Reads and writes files; the physics it runs lives in
``difftransport._core``."""
