"""The pipeline's configuration: one torch-free package, one module per top-level section of `configs/*.yaml`.

    python -c "from stages.config import load_config; print(load_config('configs/demo.yaml'))"
    python -m stages.config schema > workflow/schemas/config.schema.json

Every key `a.b` is defined in `stages/config/a.py`; `base` holds the dataclass -> schema -> validation
machinery, `model` the LM preset files (configs/model/*.yaml) and `pipeline` the tree that joins the sections.
Nothing here imports torch or a text library, so every Snakemake parse stays cheap.
"""

from stages.config.base import ConfigError, from_dict, json_schema, setting, to_dict
from stages.config.pipeline import PipelineConfig, load_config

__all__ = ["ConfigError", "PipelineConfig", "from_dict", "json_schema", "load_config", "setting", "to_dict"]
