"""What an operator's tools poll: liveness, readiness and the Prometheus metrics.

Unauthenticated, like any probe or scrape target, so they say nothing a caller could use:
states, revisions and bounded counts, no URL, key or case data. In front of the public
port a proxy need not pass them (compose.yaml's nginx answers 404 for /metrics and
/facegate/ready; Prometheus and the health checks reach each replica directly).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from gateway.api.deps import ServicesDep
from gateway.observability.health import readiness
from gateway.observability.leads import refresh_lead_states
from gateway.observability.metrics import exposition

router = APIRouter(include_in_schema=False)


@router.get("/facegate/health")
async def health(services: ServicesDep) -> dict[str, str]:
    """Liveness: answers while the process serves; checks nothing else."""
    return {"status": "ok", "policy_revision": services.policy.revision}


@router.get("/facegate/ready")
async def ready(services: ServicesDep) -> JSONResponse:
    """Readiness: 200 when every check passes, else 503 naming those that failed."""
    results = await readiness(services)
    failed = [name for name, result in results.items() if not result.ok]
    body: dict[str, Any] = {
        "status": "not_ready" if failed else "ready",
        "failed": failed,
        "checks": {
            name: {"ok": result.ok} | ({"error": result.error} if result.error else {})
            for name, result in results.items()
        },
    }
    return JSONResponse(body, status_code=503 if failed else 200)


@router.get("/metrics")
async def metrics(services: ServicesDep) -> Response:
    await refresh_lead_states(services.engine)
    content, content_type = exposition()
    return Response(content, media_type=content_type)
