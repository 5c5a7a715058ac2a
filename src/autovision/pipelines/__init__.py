"""Pipelines: one YAML file from import to promotion, with cached stages, gates, resume
and a watch trigger (``autovision pipeline``).

- :mod:`.schema`: the file's pydantic models, loaded with line numbers; its JSON Schema.
- :mod:`.stages`: one function per stage type over the library functions the CLI calls.
- :mod:`.gates`: the conditions that stop a pipeline.
- :mod:`.runner`: dependency order, cache keys, one run at a time, resume.
- :mod:`.store`: runs and stage records in the workspace database.
- :mod:`.sources` and :mod:`.watch`: listing and hashing a source; the polling trigger.
"""

from autovision.pipelines.runner import RunReport, run_pipeline
from autovision.pipelines.schema import PipelineSpec, SpecError, json_schema, load_pipeline

__all__ = ["PipelineSpec", "RunReport", "SpecError", "json_schema", "load_pipeline", "run_pipeline"]
