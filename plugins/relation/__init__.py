"""The enhanced relation network of the DAER paper (§3.3): ``concat`` fusion (Eq. 7),
``signed-power`` / ``identity`` enhancement (Eq. 8-9), the ``mlp`` relation head (Eq. 10)
and the ``frobenius`` loss (Eq. 11); and the ``product`` fusion and the ``cosine`` /
``euclidean`` / ``class-softmax`` two-tower alternatives.
"""
from registry import hookimpl

from .class_softmax import ClassSoftmaxParams, make_class_softmax
from .concat import ConcatParams, make_concat
from .cosine import CosineParams, make_cosine
from .euclidean import EuclideanParams, make_euclidean
from .enhancement import IdentityParams, SignedPowerParams, make_identity, make_signed_power
from .frobenius import FrobeniusParams, make_frobenius
from .mlp import MLPRelationParams, make_mlp
from .product import ProductParams, make_product


@hookimpl
def daer_register_components(registry) -> None:
    registry.add("fusion", "concat", factory=make_concat, params=ConcatParams,
                 default=True)
    registry.add("enhancement", "signed-power", factory=make_signed_power,
                 params=SignedPowerParams)
    registry.add("enhancement", "identity", factory=make_identity, params=IdentityParams,
                 default=True)
    registry.add("relation", "mlp", factory=make_mlp, params=MLPRelationParams,
                 default=True)
    registry.add("loss", "frobenius", factory=make_frobenius, params=FrobeniusParams,
                 default=True)
    registry.add("fusion", "product", factory=make_product, params=ProductParams)
    registry.add("relation", "cosine", factory=make_cosine, params=CosineParams)
    registry.add("relation", "euclidean", factory=make_euclidean, params=EuclideanParams)
    registry.add("relation", "class-softmax", factory=make_class_softmax,
                 params=ClassSoftmaxParams)
