"""Who may call what: the role each gRPC method needs, by method path.

Two kinds of caller. A *predict* caller may explain, predict and read models
and operations; an *admin* may also change what is served (upload, update and
delete models, cancel and delete operations) and so, since a SavedModel is a
program, run code in the daemon. Health and reflection are open to anyone who
reaches the port.

Every method the server registers must have an entry: one line per service
below. A method without one is refused (PERMISSION_DENIED), never open, and
the daemon logs an error at start naming it (`uncovered`).
"""
from __future__ import annotations

import enum


class Role(enum.IntEnum):
    """Ordered: a role may do what every lower one may."""
    OPEN = 0       # no credentials needed
    PREDICT = 1
    ADMIN = 2

    @classmethod
    def parse(cls, name: str) -> "Role":
        try:
            role = cls[name.strip().upper()]
        except KeyError:
            role = None
        if role not in (cls.PREDICT, cls.ADMIN):
            raise ValueError(f"unknown role {name!r}; use admin or predict")
        return role


OPEN, PREDICT, ADMIN = Role.OPEN, Role.PREDICT, Role.ADMIN

REFLECTION_SERVICES = ("grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection")

# service -> {method: role}. New services: one line each.
METHOD_ROLES: dict[str, dict[str, Role]] = {
    "explaind.v1.PredictionService": dict(Explain=PREDICT, Predict=PREDICT),
    "explaind.v1.ModelService": dict(GetModel=PREDICT, ListModels=PREDICT, UploadModel=ADMIN, DeleteModel=ADMIN,
                                     UpdateExplanationDataset=ADMIN),
    "explaind.v1.BatchService": dict(BatchExplain=ADMIN),
    "google.longrunning.Operations": dict(GetOperation=PREDICT, ListOperations=PREDICT, WaitOperation=PREDICT,
                                          CancelOperation=ADMIN, DeleteOperation=ADMIN),
    # Vertex AI compatibility (vertex/): Vertex's PredictionService under its own names.
    "google.cloud.aiplatform.v1.PredictionService": dict(Explain=PREDICT, Predict=PREDICT),
    "google.cloud.aiplatform.v1beta1.PredictionService": dict(Explain=PREDICT, Predict=PREDICT),
    **{f"google.cloud.aiplatform.{version}.ModelService": dict(
        GetModel=PREDICT, ListModels=PREDICT, UploadModel=ADMIN, DeleteModel=ADMIN, UpdateExplanationDataset=ADMIN)
       for version in ("v1", "v1beta1")},
    **{f"google.cloud.aiplatform.{version}.EndpointService": dict(
        GetEndpoint=PREDICT, ListEndpoints=PREDICT, CreateEndpoint=ADMIN, UpdateEndpoint=ADMIN,
        DeleteEndpoint=ADMIN, DeployModel=ADMIN, UndeployModel=ADMIN) for version in ("v1", "v1beta1")},
    **{f"google.cloud.aiplatform.{version}.JobService": dict(
        CreateBatchPredictionJob=ADMIN, GetBatchPredictionJob=PREDICT, ListBatchPredictionJobs=PREDICT,
        CancelBatchPredictionJob=ADMIN, DeleteBatchPredictionJob=ADMIN) for version in ("v1", "v1beta1")},
    "grpc.health.v1.Health": dict(Check=OPEN, Watch=OPEN, List=OPEN),
    **{service: dict(ServerReflectionInfo=OPEN) for service in REFLECTION_SERVICES},
}


def split_path(method_path: str) -> tuple[str, str]:
    """"/pkg.Service/Method" -> ("pkg.Service", "Method"); ("", "") when malformed."""
    service, sep, method = method_path.lstrip("/").partition("/")
    return (service, method) if sep and service and method and "/" not in method else ("", "")


def required_role(method_path: str, table: dict[str, dict[str, Role]] = METHOD_ROLES) -> Role | None:
    """The role a call of `method_path` needs; None when the table has no entry (refuse it)."""
    service, method = split_path(method_path)
    return table.get(service, {}).get(method)


def uncovered(registered: dict[str, set[str]], table: dict[str, dict[str, Role]] = METHOD_ROLES) -> list[str]:
    """Registered method paths the table has no entry for."""
    return sorted(f"/{service}/{method}" for service, methods in registered.items() for method in methods
                  if required_role(f"/{service}/{method}", table) is None)
