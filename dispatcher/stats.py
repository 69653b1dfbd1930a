"""Service statistics API (alert -> notification -> acknowledgement -> resolution times)."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/stats", tags=["stats"])
