"""Admin API of the registry under /api/v1 (mounted by the console app)."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["registry"])
