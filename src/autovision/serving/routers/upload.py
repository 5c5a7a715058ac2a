"""Plain multipart upload: ``curl -F file=@image.jpg .../v1/models/MODEL:upload``.

Every file part (any field name) is one image; the file name is echoed as ``key``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.datastructures import UploadFile

from autovision.serving.deps import ModelDep, StateDep, predict_auth, require_media
from autovision.serving.errors import ApiError
from autovision.serving.inference import prepare_encoded, vertex_predict
from autovision.serving.schemas import UPLOAD_BODY, PredictResponse
from autovision.serving.state import MODEL_VERSION_HEADER

router = APIRouter(tags=["predict"], dependencies=[Depends(predict_auth)])


@router.post(
    "/v1/models/{model:model_id}:upload",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    openapi_extra=UPLOAD_BODY,
)
async def upload(
    request: Request,
    response: Response,
    served: ModelDep,
    state: StateDep,
    confidenceThreshold: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,  # noqa: N803
    maxPredictions: Annotated[int, Query(ge=1)] = 10,  # noqa: N803
) -> Any:
    require_media(request, "multipart/form-data")
    limit = state.settings.max_instances
    async with request.form(max_files=limit, max_fields=limit) as form:
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise ApiError(
                400,
                "no_file",
                "send the image as a multipart file field, e.g. curl -F file=@image.jpg",
            )
        payloads = [await f.read() for f in files]
        names = [f.filename for f in files]
    spec = served.package.preprocessing
    max_pixels = state.settings.max_pixels
    response.headers[MODEL_VERSION_HEADER] = served.version_label
    return await vertex_predict(
        state,
        served,
        len(payloads),
        lambda spec=spec: prepare_encoded(payloads, spec, max_pixels),
        keys=names,
        threshold=confidenceThreshold,
        max_predictions=maxPredictions,
        route="upload",
    )
