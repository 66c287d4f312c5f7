"""The control plane of batch jobs, for every API surface (explaind.v1's
BatchService and Operations, Vertex's JobService): create, read, list, cancel
and delete, off the event loop. The jobs themselves run on the build side
(batch/manager.py); their records are operations in the store."""
from __future__ import annotations

import asyncio

from explaind.v1 import batch_service_pb2

from ..batch.manager import BatchManager, is_batch
from ..errors import NotFound
from ..store.operations import OperationRecord, OperationStore, operation_id


class BatchJobs:
    def __init__(self, manager: BatchManager, operations: OperationStore):
        self.manager = manager
        self.operations = operations

    async def create(self, request: batch_service_pb2.BatchExplainRequest,
                     vertex_job: dict | None = None) -> OperationRecord:
        return await asyncio.to_thread(self.manager.create, request, vertex_job)

    async def published(self, model_id: str):
        """The model's published record, or None (a Vertex create compares its spec with it)."""
        return await asyncio.to_thread(self.manager.models.get_published, model_id)

    async def get(self, job_id: str, field: str = "name") -> OperationRecord:
        """The job's record; NOT_FOUND for an unknown id, or an operation that is no batch job."""
        record = await asyncio.to_thread(self.operations.get, job_id) if operation_id(f"operations/{job_id}") \
            else None
        if record is None or not is_batch(record):
            raise NotFound(f"batch job {job_id[:200]!r} not found", field=field)
        return record

    async def cancelling(self, record: OperationRecord) -> bool:
        """A running job whose cancel was asked (from any replica) and has not ended yet."""
        return not record.operation.done and await asyncio.to_thread(self.operations.cancel_requested, record.op_id)

    async def cancelling_each(self, records: list[OperationRecord]) -> list[bool]:
        """cancelling() of each record, the store's reads made side by side."""
        return list(await asyncio.gather(*(self.cancelling(record) for record in records)))

    async def list(self) -> list[OperationRecord]:
        """Every batch job, by name."""
        return [r for r in await asyncio.to_thread(self.operations.list) if is_batch(r)]

    async def cancel(self, job_id: str) -> None:
        record = await self.get(job_id)
        await asyncio.to_thread(self.manager.cancel, record)

    async def delete(self, job_id: str, record: OperationRecord | None = None) -> None:
        """Forgets an ended job; `record`: the job's, when the caller has just read it."""
        record = record or await self.get(job_id)
        await asyncio.to_thread(self.manager.delete, record)
