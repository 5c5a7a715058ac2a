"""Vertex AI / TF Serving prediction: ``POST /v1/models/{model}:predict`` and the Vertex
endpoint path. ``{model:model_id}`` matches one segment without a colon, so the literal
``:predict`` suffix never becomes part of the model id (see ``deps.ModelIdConvertor``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from autovision.serving.deps import (
    EndpointModelDep,
    ModelDep,
    PredictBody,
    StateDep,
    predict_auth,
)
from autovision.serving.inference import b64decode, prepare_encoded, vertex_predict
from autovision.serving.schemas import ModelStatus, PredictRequest, PredictResponse, request_body
from autovision.serving.state import MODEL_VERSION_HEADER, ServedModel, ServerState

router = APIRouter(tags=["predict"], dependencies=[Depends(predict_auth)])


async def _predict(
    state: ServerState, served: ServedModel, body: PredictRequest, response: Response
) -> Any:
    spec = served.package.preprocessing
    max_pixels = state.settings.max_pixels
    instances = body.instances

    def prepare(spec=spec):
        payloads = [b64decode(inst.b64, i) for i, inst in enumerate(instances)]
        return prepare_encoded(payloads, spec, max_pixels)

    response.headers[MODEL_VERSION_HEADER] = served.version_label
    return await vertex_predict(
        state,
        served,
        len(instances),
        prepare,
        keys=[inst.key for inst in instances],
        threshold=body.parameters.confidenceThreshold,
        max_predictions=body.parameters.maxPredictions,
    )


@router.post(
    "/v1/models/{model:model_id}:predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    openapi_extra=request_body(PredictRequest),
)
async def predict(served: ModelDep, body: PredictBody, state: StateDep, response: Response) -> Any:
    return await _predict(state, served, body, response)


@router.post(
    "/v1/projects/{project}/locations/{location}/endpoints/{endpoint:model_id}:predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    openapi_extra=request_body(PredictRequest),
)
async def predict_endpoint(
    project: str,
    location: str,
    served: EndpointModelDep,
    body: PredictBody,
    state: StateDep,
    response: Response,
) -> Any:
    """The Vertex AI endpoint path; ``endpoint`` is the served name (or model id)."""
    return await _predict(state, served, body, response)


@router.get("/v1/models")
async def list_models(state: StateDep) -> Any:
    """The served models, for any prediction caller (``/admin/models`` needs an admin key
    and is off until one exists): what a client needs to pick one."""
    return {"models": [m.info() for m in state.models.values()]}


@router.get("/v1/models/{model:model_id}", response_model=ModelStatus)
async def model_status(served: ModelDep, state: StateDep) -> Any:
    """TF Serving's model status (every loaded version of its name), with the labels and
    input size a client needs."""
    return {
        "model_version_status": [
            {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK"}}
            for v in state.loaded_versions(served)
        ],
        "model": served.info(),
    }
