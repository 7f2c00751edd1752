"""Run configurations: plain dataclasses whose fields map 1:1 to the CLI options.

No torch here: the CLI imports this module to build its options and ``cloudkit --help`` must
stay fast. A field left at ``None`` means "the method's default" (from the paper, Gbodjo et al.
2026, and its reference code); :meth:`PretrainConfig.resolved` fills them in. The CLI takes
every option's default from these fields (``cli._options.defaults_from``), never a copy.

By concern: ``choices`` (the enums), ``parsing`` (option text, shared checks), ``pretrain``,
``finetune`` (and the experiment), ``scenes`` (tile and predict).
"""

from cloudkit.config.choices import (
    Arch,
    BestBy,
    Decode,
    Device,
    Head,
    Method,
    ShadowPlacement,
    Shadows,
    TaskName,
    Veils,
    Views,
)
from cloudkit.config.finetune import (
    FINETUNE_DEFAULT_MAX_CROP,
    RANDOM_INIT,
    ExperimentConfig,
    FinetuneConfig,
    FinetuneOptions,
)
from cloudkit.config.parsing import (
    MAX_LR,
    parse_class_weights,
    parse_fractions,
    parse_inits,
    parse_int_list,
    parse_resolutions,
)
from cloudkit.config.pretrain import (
    DEFAULT_MAX_CROP,
    METHOD_DEFAULTS,
    MethodDefaults,
    PretrainConfig,
)
from cloudkit.config.scenes import (
    MAX_DEFAULT_OVERLAP,
    PredictOptions,
    SceneOptions,
    TileOptions,
    default_overlap,
    default_threads,
)

__all__ = [
    "DEFAULT_MAX_CROP",
    "FINETUNE_DEFAULT_MAX_CROP",
    "MAX_DEFAULT_OVERLAP",
    "MAX_LR",
    "METHOD_DEFAULTS",
    "RANDOM_INIT",
    "Arch",
    "BestBy",
    "Decode",
    "Device",
    "ExperimentConfig",
    "FinetuneConfig",
    "FinetuneOptions",
    "Head",
    "Method",
    "MethodDefaults",
    "PredictOptions",
    "PretrainConfig",
    "SceneOptions",
    "ShadowPlacement",
    "Shadows",
    "TaskName",
    "Veils",
    "TileOptions",
    "Views",
    "default_overlap",
    "default_threads",
    "parse_class_weights",
    "parse_fractions",
    "parse_inits",
    "parse_int_list",
    "parse_resolutions",
]
