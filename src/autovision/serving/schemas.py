"""Request and response bodies: Vertex AI / TF Serving, KServe v2, admin."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# ---- Vertex AI / TF Serving ---------------------------------------------------------


class B64Value(BaseModel):
    b64: str


class PredictInstance(BaseModel):
    """``{"content": "<base64>"}`` (Vertex AI) or ``{"image_bytes": {"b64": ...}, "key": ...}``
    (AutoML edge container; ``key`` is echoed in the prediction)."""

    model_config = ConfigDict(extra="ignore")

    content: str | None = None
    image_bytes: B64Value | None = None
    key: str | int | None = None

    @model_validator(mode="after")
    def _one_image(self) -> PredictInstance:
        if (self.content is None) == (self.image_bytes is None):
            raise ValueError("give the image as 'content' or as 'image_bytes.b64'")
        return self

    @property
    def b64(self) -> str:
        return self.content if self.content is not None else self.image_bytes.b64  # type: ignore[union-attr]


class PredictParameters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    confidenceThreshold: float = Field(0.0, ge=0.0, le=1.0)
    maxPredictions: int = Field(10, ge=1)


class PredictRequest(BaseModel):
    instances: list[PredictInstance] = Field(min_length=1)
    parameters: PredictParameters = Field(default_factory=PredictParameters)


class Prediction(BaseModel):
    ids: list[str]
    displayNames: list[str]
    confidences: list[float]
    key: str | int | None = None


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    deployedModelId: str
    model: str
    modelVersionId: str | None = None


class ModelStatus(BaseModel):
    """``GET /v1/models/{model}``: TF Serving's version status plus what a client needs."""

    model_version_status: list[dict[str, Any]]
    model: dict[str, Any]


# ---- KServe Open Inference Protocol (v2) -------------------------------------------


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class InferInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


# ---- admin --------------------------------------------------------------------------


class CreateKeyRequest(BaseModel):
    role: Literal["predict", "reviewer", "admin"]


class CreatedKey(BaseModel):
    id: str
    role: str
    key: str


class KeyInfo(BaseModel):
    id: str
    role: str
    created_at: str
    revoked: bool


class SetAliasRequest(BaseModel):
    """``PUT /admin/models/{name}/aliases/{alias}``: the version it names from now on."""

    version: int = Field(ge=1)
    reason: str | None = Field(None, max_length=1000)


class RollbackRequest(BaseModel):
    """``POST /admin/models/{name}/aliases/{alias}:rollback`` (the body is optional)."""

    reason: str | None = Field(None, max_length=1000)


class ReviewLabelRequest(BaseModel):
    """``POST /admin/review/{name}/{prediction_id}``: the reviewed labels."""

    labels: list[str] = Field(min_length=1, max_length=1000)


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: the labels a client says are right for one image of its
    earlier request."""

    request_id: str = Field(min_length=1, max_length=128)
    labels: list[str] = Field(min_length=1, max_length=1000)
    instance: int = Field(0, ge=0)


# ---- OpenAPI request bodies of routes that read their body themselves -----------------


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``$ref: #/$defs/X`` replaced by X, so the schema stands alone inside an operation."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def request_body(
    model: type[BaseModel], *extra_media: str, required: bool = True
) -> dict[str, Any]:
    """``openapi_extra`` describing the JSON body a route parses itself (after auth), so the
    schema (and a fuzzer reading it) knows the body; ``extra_media`` adds binary forms."""
    schema = model.model_json_schema()
    content: dict[str, Any] = {
        "application/json": {"schema": _inline(schema, schema.get("$defs", {}))}
    }
    for media in extra_media:
        content[media] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": required, "content": content}}


UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            }
        },
    }
}
