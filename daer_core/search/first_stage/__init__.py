"""First-stage embedding spaces: vectors whose inner product should rank like the relation head.

The relation network is not a metric, so nearest-neighbour search needs a space in which
``<query_vector(q), item_vector(x)>`` orders the gallery as ``score(q, x)`` does; the
second stage then re-scores the candidates exactly. Five spaces are implemented and compared
by ``benchmarks/search_scale.py`` (figures in ``docs/search.md``):

``learned`` (the default, best measured recall)
    two small towers (a linear part started from the ``distilled`` fit plus a one-hidden-layer
    MLP) trained after training with a listwise loss on the relation head's logits of the
    training split's pairs, optionally continued on items mined from a pool of unlabelled
    items (the gallery's own); see :class:`LearnedStage`.
``distilled``
    a low-rank bilinear form fitted after training. On the run's training split every text x
    image pair is scored by the relation head, and ``M`` minimises
    ``||X M Y^T - logit(S)||^2 + ridge`` in closed form, where the rows of ``X``/``Y`` are the
    features the head sees (enhanced embeddings) with a constant 1 appended (so per-item
    offsets are fitted too). ``M = L R^T`` by SVD; text items get ``L^T x``, image items
    ``R^T y``, and a query gets the other factor. No gradient steps, seconds to fit.
``taylor``
    the head linearised around the mean item half: a query ranks items by the gradient of
    ``g`` at ``query_half + mean_half``, mapped back through the first layer.
``halves``
    the plain inner product of the first-layer halves.
``embedding``
    the inner product of the raw embeddings (needs equal widths).
``cosine``
    the cosine of the raw embeddings: the first stage a ``contrastive-rerank`` run trained
    (its relation head re-ranks this ranking's top candidates, as at evaluation), and the
    ranking of any contrastive / VSE two-tower model.

Modules: :mod:`.base` (the :class:`FirstStage` interface, :func:`teacher_logits`),
:mod:`.closed_form` (``distilled``, ``taylor``, ``halves``, ``embedding``, ``cosine``),
:mod:`.learned` (``learned`` and its training), :mod:`.methods` (the table of names,
:func:`fit_first_stage`, :func:`load_first_stage`).
"""
from .base import FirstStage, teacher_logits
from .closed_form import CosineStage, DistilledStage, EmbeddingStage, HalvesStage, TaylorStage
from .learned import LearnedStage
from .methods import DEFAULT_METHOD, METHODS, STAGES, fit_first_stage, load_first_stage

__all__ = [
    "CosineStage", "DEFAULT_METHOD", "DistilledStage", "EmbeddingStage", "FirstStage",
    "HalvesStage", "LearnedStage", "METHODS", "STAGES", "TaylorStage", "fit_first_stage",
    "load_first_stage", "teacher_logits",
]
