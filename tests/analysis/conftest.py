from ..models.conftest import one_thread  # noqa: F401  (a model's passes on tiny images)
