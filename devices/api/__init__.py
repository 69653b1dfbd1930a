"""Admin API of the registry under /api/v1 (mounted by the console app).

Create, read, update and deactivate communities, elders, their contacts and away periods,
devices and staff; ledger import; device MQTT credentials. Every route is filtered by what the
principal may see (404 otherwise); ID numbers are always masked and medical notes are shown only
to those who may see personal data. Every read of personal data (elders, contacts, away periods,
staff, readings) and every write leaves an audit row (who, what, which elder, from where) in the
same transaction. Errors have FastAPI's shape: `detail` is a list of
`{"loc": [..., field], "msg": why}`."""

from __future__ import annotations

from fastapi import APIRouter

from devices.api import communities, contacts, devices, elders, ledger, staff
from devices.readings import history

router = APIRouter(prefix="/api/v1", tags=["registry"])
router.include_router(history.router)
for resource in (communities, elders, contacts, devices, staff, ledger):  # in the old order
    router.include_router(resource.router)
