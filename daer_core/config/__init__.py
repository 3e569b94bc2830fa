"""Run and pipeline configs: schema, loading, presets and overrides."""
from .loading import (apply_overrides, deep_merge, dump_config, load_run_config,
                      load_saved_config, preset_config, read_config_file)
from .schema import (COMPONENT_PATHS, ComponentRef, EvalConfig, ImageConfig, OptimizerConfig,
                     PipelineConfig, RunConfig, StageConfig, StagesConfig, TextConfig,
                     TrainConfig)

__all__ = [
    "apply_overrides", "deep_merge", "dump_config", "load_run_config", "load_saved_config",
    "preset_config", "read_config_file",
    "COMPONENT_PATHS", "ComponentRef", "EvalConfig", "ImageConfig", "OptimizerConfig",
    "PipelineConfig", "RunConfig", "StageConfig", "StagesConfig", "TextConfig", "TrainConfig",
]
