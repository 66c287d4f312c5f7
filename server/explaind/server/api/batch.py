"""explaind.v1 BatchService: BatchExplain starts a batch job (an operation,
read, waited for, cancelled and deleted through google.longrunning.Operations)."""
from __future__ import annotations

from explaind.v1 import batch_service_pb2_grpc

from ..control.batch_jobs import BatchJobs
from .status import translate_errors


class BatchServicer(batch_service_pb2_grpc.BatchServiceServicer):
    def __init__(self, jobs: BatchJobs):
        self.jobs = jobs

    @translate_errors
    async def BatchExplain(self, request, context):
        return (await self.jobs.create(request)).operation
