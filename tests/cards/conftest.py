"""Card fixtures: the evaluation tests' fake-model workspace (``known``)."""

from tests.evaluation.conftest import known  # noqa: F401
