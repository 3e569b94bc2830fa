"""``daer serve``: the search service (FastAPI JSON endpoints + a static web page).

Needs the ``search`` extra (fastapi, uvicorn). See :mod:`daer_core.service.app`.
"""
from .app import create_app, model_card

__all__ = ["create_app", "model_card"]
