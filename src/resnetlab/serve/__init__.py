"""``resnetlab serve``: a JSON API and a web page for a model file's predictions.

``serve(model_file)`` runs the server; ``create_app(load_predictor(model_file))`` is the
ASGI app, for another server or a test client. Needs the ``serve`` extra (FastAPI, uvicorn,
python-multipart).
"""

import importlib.util

from ..errors import ResnetlabError

INSTALL_SERVE = "pip install 'resnetlab[serve]'"

# Each package of the extra and the names it imports as (python-multipart: python_multipart,
# or multipart in older releases).
_EXTRA = {
    "fastapi": ("fastapi",),
    "uvicorn": ("uvicorn",),
    "python-multipart": ("python_multipart", "multipart"),
}
_missing = [p for p, names in _EXTRA.items() if not any(map(importlib.util.find_spec, names))]
if _missing:
    raise ResnetlabError(
        f"resnetlab serve needs {', '.join(_missing)}, which "
        f"{'is' if len(_missing) == 1 else 'are'} not installed: {INSTALL_SERVE}"
    )

from .app import create_app  # noqa: E402
from .batching import Batcher, QueueFull  # noqa: E402
from .predictor import Predictor, RequestError, load_predictor  # noqa: E402
from .server import serve  # noqa: E402

__all__ = [
    "Batcher",
    "Predictor",
    "QueueFull",
    "RequestError",
    "create_app",
    "load_predictor",
    "serve",
]
