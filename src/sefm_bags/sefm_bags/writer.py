"""A rosbag2 bag written as a series of closed storage files ("segments"), so a killed recorder loses little.

A storage file is readable only once it is closed: MCAP needs its summary and
footer, and rosbags writes `metadata.yaml` at close. So the writer closes the
open segment at every episode end (the recorder asks) and at the latest every
`segment_seconds`, moves it into the bag and rewrites `metadata.yaml`
atomically, listing every closed segment (a split bag, as `ros2 bag record
--max-bag-duration` makes). A recorder killed at any moment leaves a bag that
reads as everything up to its last closed segment; only the open segment (the
running episode, at most `segment_seconds`) is lost, in a hidden `.open_*`
folder that readers ignore.

With `compression="zstd"` (MCAP only) each MCAP chunk is zstd-compressed, the
storage-level compression rosbag2's MCAP plugin writes and every MCAP reader
decodes; metadata.yaml then names no rosbag2 compression, as rosbag2 does.

Metadata is rosbag2 format version 8: the last version whose QoS profiles are
a YAML string, the shape Humble's reader expects (version 9 changed it).
"""
from __future__ import annotations

import os
import pathlib
import shutil
import time
from dataclasses import dataclass, field

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from ruamel.yaml import YAML

STORAGES = {"mcap": (StoragePlugin.MCAP, ".mcap"), "sqlite3": (StoragePlugin.SQLITE3, ".db3")}
METADATA_VERSION = 8
COMPRESSIONS = ("none", "zstd")


class BagWriteError(RuntimeError):
    """The bag cannot be written (the path exists, an unknown storage or topic)."""


@dataclass
class _Topic:
    msgtype: str
    qos: list = field(default_factory=list)


class SegmentedBagWriter:
    def __init__(self, path: str | os.PathLike, storage: str = "mcap", typestore=None,
                 segment_seconds: float = 5.0, compression: str = "none"):
        if storage not in STORAGES:
            raise BagWriteError(f"unknown bag storage {storage!r}; valid: {', '.join(STORAGES)}")
        if compression not in COMPRESSIONS:
            raise BagWriteError(f"unknown bag compression {compression!r}; valid: {', '.join(COMPRESSIONS)}")
        if compression != "none" and storage != "mcap":
            raise BagWriteError(f"{compression} chunk compression needs the mcap storage (not {storage})")
        self.compression = compression
        self.path = pathlib.Path(path)
        if self.path.exists():
            raise BagWriteError(f"{self.path} exists already; a recording never overwrites a bag")
        self.path.mkdir(parents=True)
        if typestore is None:
            from sefm_bags.types import typestore as default_typestore

            typestore = default_typestore()
        self.storage, self.typestore, self.segment_seconds = storage, typestore, segment_seconds
        self.topics: dict[str, _Topic] = {}
        self.files: list[dict] = []                       # closed segments: the `files` entries of metadata.yaml
        self.topic_counts: dict[str, dict] = {}           # topic -> its metadata entry, counts summed
        self.writer: Writer | None = None
        self.connections: dict = {}
        self.segment = 0
        self.opened_at = 0.0
        self.closed = False
        self._write_metadata()   # a bag from the first moment: empty until its first segment closes

    def add_topic(self, topic: str, msgtype: str, qos: list | None = None) -> None:
        if topic in self.topics:
            return
        self.topics[topic] = _Topic(msgtype, list(qos or []))
        if self.writer is not None:
            self._connect(topic)

    def write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        if topic not in self.topics:
            raise BagWriteError(f"topic {topic!r} was not added to the bag")
        if self.writer is None:
            self._open_segment()
        self.writer.write(self.connections[topic], timestamp_ns, data)

    def roll_if_due(self) -> None:
        if self.writer is not None and time.monotonic() - self.opened_at >= self.segment_seconds:
            self.roll()

    def roll(self) -> None:
        """Close the open segment, move it into the bag and list it in metadata.yaml."""
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        writer.close()
        plugin_suffix = STORAGES[self.storage][1]
        tmp_dir = writer.path
        final = self.path / f"{self.path.name}_{self.segment}{plugin_suffix}"
        src = tmp_dir / f"{tmp_dir.name}{plugin_suffix}"
        _fsync(src)
        os.replace(src, final)
        segment_meta = YAML(typ="safe").load((tmp_dir / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        shutil.rmtree(tmp_dir)
        entry = dict(segment_meta["files"][0], path=final.name)
        self.files.append(entry)
        for item in segment_meta["topics_with_message_count"]:
            name = item["topic_metadata"]["name"]
            if name in self.topic_counts:
                self.topic_counts[name]["message_count"] += item["message_count"]
            else:
                self.topic_counts[name] = item
        self.segment += 1
        self._write_metadata()

    def close(self) -> None:
        if self.closed:
            return
        self.roll()
        self.closed = True

    # --- internals -------------------------------------------------------------------------

    def _open_segment(self) -> None:
        plugin = STORAGES[self.storage][0]
        self.writer = Writer(self.path / f".open_{self.segment}", version=METADATA_VERSION, storage_plugin=plugin)
        if self.compression == "zstd":
            self.writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self.writer.open()
        self.connections = {}
        for topic in self.topics:
            self._connect(topic)
        self.opened_at = time.monotonic()

    def _connect(self, topic: str) -> None:
        spec = self.topics[topic]
        try:
            self.connections[topic] = self.writer.add_connection(topic, spec.msgtype, typestore=self.typestore,
                                                                 offered_qos_profiles=spec.qos)
        except KeyError as exc:
            raise BagWriteError(f"topic {topic!r}: message type {spec.msgtype!r} is unknown to the bag's "
                                "type store") from exc

    def _write_metadata(self) -> None:
        starts = [f["starting_time"]["nanoseconds_since_epoch"] for f in self.files]
        ends = [f["starting_time"]["nanoseconds_since_epoch"] + f["duration"]["nanoseconds"] for f in self.files]
        start = min(starts) if starts else 0
        info = {
            "version": METADATA_VERSION,
            "storage_identifier": self.storage,
            "relative_file_paths": [f["path"] for f in self.files],
            "duration": {"nanoseconds": (max(ends) - start) if ends else 0},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": sum(f["message_count"] for f in self.files),
            "topics_with_message_count": list(self.topic_counts.values()),
            "compression_format": "",
            "compression_mode": "",
            "files": self.files,
            "custom_data": {"recorded_by": "sefm recorder"},
            "ros_distro": "kilted",
        }
        tmp = self.path / "metadata.yaml.tmp"
        yaml = YAML(typ="safe")
        yaml.default_flow_style = False
        with open(tmp, "w") as f:
            yaml.dump({"rosbag2_bagfile_information": info}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path / "metadata.yaml")


def _fsync(path: pathlib.Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
