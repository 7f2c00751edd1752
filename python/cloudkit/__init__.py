"""cloudkit: cloud detection in Sentinel-2 imagery with self-supervised learning.

The front door for Python (`cloudkit.api`; the CLI's commands call the same code)::

    import cloudkit
    model = cloudkit.load_model()                  # the default model, loaded once
    mask = model.predict_array(array, bands=("B02", "B03", "B04", "B08"), resolution=20)
    cloudkit.predict("S2B_MSIL1C_....SAFE", out="masks")

Importing it is cheap: torch, the Rust extension and the readers load on the first call.
"""

import sys
import types

__version__ = "0.1.0"  # before the imports: modules below read it as they load

from cloudkit import api, errors  # noqa: E402
from cloudkit.api import (  # noqa: E402, F401 (re-exported: __all__ takes api.__all__)
    EvaluateResult,
    Model,
    PredictResult,
    TileResult,
    TrainResult,
    evaluate,
    finetune,
    load_model,
    predict,
    pretrain,
    tile,
)


class _Package(types.ModuleType):
    """The package's own module type. The subpackage ``cloudkit.predict`` (windows, blending,
    the COG writer) shares its name with the function :func:`predict`, and importing a
    submodule sets the package's attribute of that name to it: the function stays instead.
    The subpackage is still what ``from cloudkit.predict.writer import ...`` imports."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "predict" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["__version__", "errors"]
__all__ += api.__all__  # the API's names, listed once (api.py)
