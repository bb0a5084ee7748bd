# eli/server/models.py: GET /v1/models and GET /v1/models/{id} (OpenAI's model objects), registered
# by app.py. The server serves one model; any other id is a 404 in OpenAI's error shape
# ({"error": {message, type: "invalid_request_error", param: "model", code: "model_not_found"}}).
# Ids may hold slashes ("org/name"): the route takes the rest of the path.
from __future__ import annotations

from .protocol import ApiError


def model_card(srv) -> dict:
    return {"id": srv.model_name, "object": "model", "created": srv.created, "owned_by": "eli",
            "root": srv.model_name, "max_model_len": srv.max_model_len, "vocab_size": srv.vocab_size}


def register(v1, srv) -> None:
    """Adds the model routes to the /v1 router `v1` of the app serving `srv` (core.Server)."""

    @v1.get("/models")
    async def models():
        return {"object": "list", "data": [model_card(srv)]}

    @v1.get("/models/{model_id:path}")
    async def model(model_id: str):
        if model_id != srv.model_name:
            raise ApiError(404, f"The model `{model_id[:200]}` does not exist.", param="model",
                           code="model_not_found")
        return model_card(srv)
