"""Image-side components of the DAER paper (§3.2): the ``mobilenetv3-large`` encoder and the
``dual-spatial`` attention (Eq. 4-6) it carries inside every bottleneck; and the ``timm``
alternative encoder.
"""
from registry import hookimpl

from .dual_spatial import DualSpatialParams, make_dual_spatial
from .mobilenet import MobileNetV3Params, make_mobilenetv3_large
from .timm_encoder import TimmParams, make_timm_encoder


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("image_encoder", "mobilenetv3-large", factory=make_mobilenetv3_large,
                 params=MobileNetV3Params, default=True)
    registry.add("image_attention", "dual-spatial", factory=make_dual_spatial,
                 params=DualSpatialParams)
    registry.add("image_encoder", "timm", factory=make_timm_encoder, params=TimmParams)
