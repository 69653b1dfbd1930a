"""Twilio webhooks (voice Gather, call/SMS status, inbound SMS), mounted by the console app."""

from fastapi import APIRouter

router = APIRouter(prefix="/twilio", tags=["twilio"])
