"""A saved index's meta.json, the one place that knows its keys: persistence.py
writes it and reads it to load the index; the build side and the loader read
it (`IndexMeta.read`, `IndexMeta.parse`) for a saved index's kind, segments
and last update without loading the index.

Format 2 (written now) records ids compactly and a compressed index's vector
segments; format 1 folders (Flat or IVF-Flat, ids.json, embeddings.npy) still
read, their kind told by their lists."""
from __future__ import annotations

import dataclasses
import json
import os

from explaind.server.index.config import SearchConfig
from explaind.server.index.kinds import IndexKind

META_FILE = "meta.json"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)


@dataclasses.dataclass(frozen=True)
class Alternative:
    """A setting the model could raise, and the recall it measured with it."""
    setting: str            # the search config's name: approximateNeighborsCount, leafNodesToSearchPercent
    now: float
    value: float
    recall: float

    def describe(self) -> str:
        return f"{self.setting} {self.now:g} -> {self.value:g} gives {self.recall:.3f}"


@dataclasses.dataclass(frozen=True)
class RecallReport:
    """Recall@neighbor_count of an index as configured, measured on `queries`
    held-out examples against exact search (recall.py), and the floor it is
    held to; below it, the alternatives measured."""
    recall: float
    neighbor_count: int
    queries: int            # 0: an exact index, not measured (recall 1 by construction)
    floor: float
    alternatives: tuple[Alternative, ...] = ()
    floor_of: str = "a treeAhConfig"    # whose floor: "the PRECISE preset", ...

    @property
    def below_floor(self) -> bool:
        return self.recall < self.floor

    def warning(self) -> str | None:
        """The operation's warning, when below the floor."""
        if not self.below_floor:
            return None
        text = (f"recall@{self.neighbor_count} is {self.recall:.3f} (measured on {self.queries} held-out examples "
                f"against exact search), below the {self.floor:g} floor of {self.floor_of}")
        if self.alternatives:
            text += "; raise " + "; ".join(a.describe() for a in self.alternatives)
        return text

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "RecallReport":
        return cls(recall=float(d["recall"]), neighbor_count=int(d["neighbor_count"]), queries=int(d["queries"]),
                   floor=float(d["floor"]), floor_of=str(d.get("floor_of") or ""),
                   alternatives=tuple(Alternative(str(a["setting"]), float(a["now"]), float(a["value"]),
                                                  float(a["recall"])) for a in d.get("alternatives") or ()))


@dataclasses.dataclass(frozen=True)
class Tuning:
    """What a build picked where the config left settings open (tuning.py), and why."""
    leaves: int             # lists searched (nprobe)
    candidates: int         # re-ranked for the model's neighborCount
    code_shape: str         # CodeShape.describe()
    target: float           # the recall it aimed at
    reason: str             # what was measured

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Tuning":
        return cls(leaves=int(d["leaves"]), candidates=int(d["candidates"]), code_shape=str(d["code_shape"]),
                   target=float(d["target"]), reason=str(d["reason"]))


@dataclasses.dataclass(frozen=True)
class IndexInfo:
    """What was built and where it lives; saved in meta.json and shown in the Model."""
    index_type: str         # the Model's name for it: IndexKind.faiss_description
    nlist: int
    nprobe: int
    device: str
    index_bytes: int        # host memory the loaded index holds
    metric: str
    mapped_bytes: int = 0   # full vectors read through a memory map (page cache, not held)
    recall: RecallReport | None = None      # measured by the build (or update) that made it
    tuning: Tuning | None = None            # what that build picked, where the config left it open

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "IndexInfo":
        return cls(index_type=str(d.get("index_type", "")), nlist=int(d.get("nlist") or 0),
                   nprobe=int(d.get("nprobe") or 0), device=str(d.get("device", "cpu")),
                   index_bytes=int(d.get("index_bytes") or 0), metric=str(d.get("metric", "")),
                   mapped_bytes=int(d.get("mapped_bytes") or 0),
                   recall=RecallReport.from_json(d["recall"]) if d.get("recall") else None,
                   tuning=Tuning.from_json(d["tuning"]) if d.get("tuning") else None)


@dataclasses.dataclass(frozen=True)
class Lineage:
    """How far a compressed index's codebooks are from its examples: trained on
    `trained` examples, then `added` and `removed` by updates. Default ids of
    added examples continue from `next_default_id`."""
    trained: int
    added: int = 0
    removed: int = 0
    next_default_id: int = 0

    def added_fraction(self, live: int) -> float:
        return self.added / live if live else 0.0


@dataclasses.dataclass(frozen=True)
class Segment:
    """A file of full vectors (`{name}.npy` in the model's segments folder) a compressed index reads."""
    name: str
    rows: int


@dataclasses.dataclass(frozen=True)
class IndexMeta:
    """What meta.json records. What a file lacks reads as empty (a format it
    cannot read gives its version alone); loading checks what it needs."""
    format_version: int | None = None
    kind: IndexKind | None = None
    config: SearchConfig | None = None
    info: IndexInfo | None = None
    size: int = 0                       # positions, removed ones included
    dimensions: int = 0
    ids: dict | None = None             # ExampleIds' own record (ids.py); format 1 has ids.json instead
    segments: tuple[Segment, ...] = ()
    lineage: Lineage | None = None      # format 1 records none
    last_update: tuple[int, int] = (0, 0)   # (added, removed) by the update that made this build

    @property
    def segment_names(self) -> list[str]:
        return [s.name for s in self.segments]

    @property
    def readable(self) -> bool:
        return self.format_version in READABLE_FORMATS

    def to_json(self) -> dict:
        return {"format_version": self.format_version, "kind": self.kind.value, "config": self.config.to_json(),
                "info": self.info.to_json(), "size": self.size, "dimensions": self.dimensions, "ids": self.ids,
                "segments": [{"name": s.name, "rows": s.rows} for s in self.segments],
                "lineage": dataclasses.asdict(self.lineage), "last_update": list(self.last_update)}

    @classmethod
    def from_json(cls, d: dict) -> "IndexMeta":
        version = d.get("format_version")
        head = dict(segments=tuple(Segment(str(s["name"]), int(s["rows"])) for s in d.get("segments", ())),
                    last_update=tuple(int(n) for n in d.get("last_update", (0, 0))))
        if version not in READABLE_FORMATS:
            return cls(format_version=version, **head)
        info = IndexInfo.from_json(d["info"]) if "info" in d else None
        kind = d.get("kind")
        if version == 1 and info is not None:       # format 1 records no kind: its lists tell
            kind = IndexKind.IVF_FLAT if info.nlist else IndexKind.FLAT
        return cls(format_version=version, kind=IndexKind(kind) if kind else None,
                   config=SearchConfig.from_json(d["config"]) if "config" in d else None, info=info,
                   size=int(d.get("size") or 0), dimensions=int(d.get("dimensions") or 0), ids=d.get("ids"),
                   lineage=Lineage(**{k: int(v) for k, v in d["lineage"].items()}) if "lineage" in d else None,
                   **head)

    @classmethod
    def parse(cls, data: bytes | str) -> "IndexMeta":
        """A meta.json's content, as the store hands it."""
        return cls.from_json(json.loads(data))

    @classmethod
    def read(cls, folder: str) -> "IndexMeta":
        """The meta.json of a saved index's folder."""
        with open(os.path.join(folder, META_FILE), encoding="utf-8") as f:
            return cls.from_json(json.load(f))

    def write(self, folder: str) -> None:
        with open(os.path.join(folder, META_FILE), "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f)
