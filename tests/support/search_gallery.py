"""The small gallery the search tests index (a module of its own: a test that imported it
from ``conftest`` got whichever folder's conftest was imported first)."""

GALLERY = "dataset:shapes:all"
GALLERY_SET = ["num_pairs=80", "seed=11"]
