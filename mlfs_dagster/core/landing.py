"""The landing zone: daily files from upstream systems, `<root>/<source>/date=YYYY-MM-DD/*.parquet`.

The root is a local folder or an `s3://bucket/prefix` URI; pyarrow's filesystems read both the same way.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class LandingFileError(ValueError):
    """A landing file is missing or unreadable; the message names the path."""


class LandingZone:
    def __init__(self, root: str):
        self.root = root

    @cached_property
    def _fs_and_base(self) -> tuple[pafs.FileSystem, str]:
        if "://" in self.root:
            return pafs.FileSystem.from_uri(self.root)
        return pafs.LocalFileSystem(), self.root.rstrip("/")

    def day_folder(self, source: str, day: dt.date) -> str:
        _, base = self._fs_and_base
        return f"{base}/{source}/date={day.isoformat()}"

    def read_day(self, source: str, day: dt.date) -> dict[str, pa.Table]:
        """Each Parquet file of one source and day, by path."""
        fs, _ = self._fs_and_base
        folder = self.day_folder(source, day)
        selector = pafs.FileSelector(folder, allow_not_found=True)
        paths = sorted(f.path for f in fs.get_file_info(selector) if f.path.endswith(".parquet"))
        if not paths:
            raise LandingFileError(
                f"no landing file for source '{source}' on {day}: expected Parquet files in {folder}/"
            )
        return {path: self._read_file(fs, path) for path in paths}

    @staticmethod
    def _read_file(fs: pafs.FileSystem, path: str) -> pa.Table:
        try:
            return pq.read_table(path, filesystem=fs)
        except (pa.ArrowInvalid, OSError) as error:
            raise LandingFileError(f"cannot read landing file {path}: {error}") from error
