"""Token endpoints (admin only; see app.auth.access)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from app.audit.recorder import AuditedRoute
from app.auth import schemas, tokens
from app.deps import AuditDep, ConnDep, CurrentPrincipal, TxDep, after_commit
from app.openapi import links, responses
from app.schemas import PageParams, page_params

router = APIRouter(prefix="/tokens", tags=["tokens"], route_class=AuditedRoute)


@router.post(
    "",
    operation_id="createToken",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.TokenCreated,
    responses={201: links("tokenId", "id", "revokeToken"), **responses(409)},
)
async def create_token(
    conn: TxDep,
    principal: CurrentPrincipal,
    audit: AuditDep,
    body: schemas.TokenCreate,
    response: Response,
) -> schemas.TokenCreated:
    token, secret = await tokens.create(
        conn,
        name=body.name,
        role=body.role,
        projects=body.projects,
        expires_at=body.expires_at,
        created_by=principal.name,
    )
    audit.target = str(token.id)
    response.headers["Location"] = f"/api/v1/tokens/{token.id}"
    response.headers["Cache-Control"] = "no-store"  # the answer carries a secret
    read = schemas.Token.model_validate(token)
    return schemas.TokenCreated(**read.model_dump(), token=secret)


@router.get(
    "",
    operation_id="listTokens",
    response_model=schemas.TokenPage,
)
async def list_tokens(
    conn: ConnDep,
    page: Annotated[PageParams, Depends(page_params)],
    revoked: Annotated[
        bool | None, Query(description="true: revoked only; false: live only; unset: all.")
    ] = None,
) -> schemas.TokenPage:
    rows, nxt = await tokens.list_page(conn, page, revoked=revoked)
    return schemas.TokenPage(items=[schemas.Token.model_validate(t) for t in rows], next=nxt)


@router.delete(
    "/{tokenId}",
    operation_id="revokeToken",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(404),
)
async def revoke_token(
    request: Request,
    conn: TxDep,
    token_id: Annotated[uuid.UUID, Path(alias="tokenId", description="Token id.")],
) -> Response:
    await tokens.revoke(conn, token_id)
    # Other API processes stop accepting it within RUNPLANE_CREDENTIAL_CACHE_SECONDS.
    after_commit(request, request.app.state.credentials.forget_all)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
