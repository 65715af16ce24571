"""Checking the case format while a case streams past, without holding the case.

``read_case`` loads a whole case into memory; an upload of a case may be gigabytes. A
:class:`CaseStreamCheck` is fed the bytes in order and keeps only the header (at most
``MAX_HEADER``), one decompressor and a bounded buffer for JSON blocks: it refuses what
``read_case`` would refuse (wrong magic, damaged header, damaged or short blocks, numeric
blocks of the wrong length) and raises :class:`CaseFormatError` as soon as it sees it.
"""

from __future__ import annotations

import itertools
import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from sessions.runtime.case import MAGIC, MAX_HEADER, CaseFormatError

PREFIX = len(MAGIC) + 4
INFLATE_CHUNK = 1024 * 1024
# JSON blocks (sets, text and scalar values) up to this size, uncompressed, are parsed; larger
# ones are only decompressed, to keep the check's memory flat.
JSON_CHECK_BYTES = 4 * 1024 * 1024


@dataclass
class _Block:
    name: str
    start: int
    end: int
    itemsize: int  # 0: a JSON block
    count: int


class CaseStreamCheck:
    """Feed it the bytes of a case in order with :meth:`feed`, then call :meth:`finish`."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.header_length: int | None = None
        self.blocks: list[_Block] | None = None  # the blocks still to come, the next one last
        self.position = 0  # within the blocks area, once the header is read
        self.inflater: zlib._Decompress | None = None
        self.produced = 0
        self.json: bytearray | None = None

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.blocks is None:
                view = self._fill_header(view)
                continue
            self._close_finished_blocks()
            if not self.blocks:
                return  # bytes after the last block: read_case ignores them too
            block = self.blocks[-1]
            if self.position < block.start:  # a gap between blocks
                skip = min(len(view), block.start - self.position)
                self.position += skip
                view = view[skip:]
                continue
            take = min(len(view), block.end - self.position)
            self._inflate(block, view[:take])
            self.position += take
            view = view[take:]
        if self.blocks is not None:
            self._close_finished_blocks()

    def finish(self) -> None:
        """Raise :class:`CaseFormatError` unless everything the header announced has arrived."""
        if self.blocks is None:
            if len(self.buffer) < len(MAGIC):
                raise CaseFormatError("these bytes are not a case")
            raise CaseFormatError("the case header is damaged")
        self._close_finished_blocks()
        if self.blocks:
            raise CaseFormatError(f"the data of {self.blocks[-1].name} is damaged")

    # ------------------------------------------------------------ header

    def _fill_header(self, view: memoryview) -> memoryview:
        need = PREFIX if self.header_length is None else PREFIX + self.header_length
        take = min(len(view), need - len(self.buffer))
        self.buffer += view[:take]
        if len(self.buffer) >= len(MAGIC):
            self._check_magic(bytes(self.buffer[: len(MAGIC)]))
        if len(self.buffer) == need:
            if self.header_length is None:
                (self.header_length,) = struct.unpack(">I", self.buffer[len(MAGIC) : PREFIX])
                if self.header_length > MAX_HEADER:
                    raise CaseFormatError("the case header is damaged")
            else:
                self.blocks = self._parse_header(bytes(self.buffer[PREFIX:]))
                self.buffer = bytearray()
        return view[take:]

    @staticmethod
    def _check_magic(head: bytes) -> None:
        if head[: len(MAGIC)] == MAGIC:
            return
        if head[:7] == MAGIC[:7]:
            raise CaseFormatError(f"this case was written in format {head[7]}, which this version cannot read")
        raise CaseFormatError("these bytes are not a case")

    @staticmethod
    def _parse_header(raw: bytes) -> list[_Block]:
        try:
            header = json.loads(raw)
            entries = header["blocks"]
            blocks = [_block(entry) for entry in entries]
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):  # RecursionError: nested too deep
            raise CaseFormatError("the case header is damaged") from None
        blocks.sort(key=lambda block: block.start)
        for before, after in itertools.pairwise(blocks):
            if after.start < before.end:
                raise CaseFormatError(f"the data of {after.name} overlaps that of {before.name}")
        blocks.reverse()
        return blocks

    # ------------------------------------------------------------ blocks

    def _inflate(self, block: _Block, data: memoryview) -> None:
        if self.inflater is None:
            self.inflater, self.produced = zlib.decompressobj(), 0
            self.json = bytearray() if block.itemsize == 0 else None
        try:
            out = self.inflater.decompress(data, INFLATE_CHUNK)
            self._take(block, out)
            while self.inflater.unconsumed_tail:
                self._take(block, self.inflater.decompress(self.inflater.unconsumed_tail, INFLATE_CHUNK))
        except zlib.error:
            raise CaseFormatError(f"the data of {block.name} is damaged") from None

    def _take(self, block: _Block, out: bytes) -> None:
        self.produced += len(out)
        if block.itemsize:
            if self.produced > block.count * block.itemsize:
                raise CaseFormatError(f"{block.name} holds more values than its header says ({block.count})")
        elif self.json is not None:
            if self.produced > JSON_CHECK_BYTES:
                self.json = None
            else:
                self.json += out

    def _close_finished_blocks(self) -> None:
        while self.blocks and self.position >= self.blocks[-1].end:
            block = self.blocks.pop()
            if self.inflater is None:  # an empty block: zlib.decompress(b"") fails in read_case too
                self._inflate(block, memoryview(b""))
            inflater = self.inflater
            if inflater is None or not inflater.eof:
                raise CaseFormatError(f"the data of {block.name} is damaged")
            if block.itemsize and self.produced != block.count * block.itemsize:
                raise CaseFormatError(
                    f"{block.name} holds {self.produced // block.itemsize} values, its header says {block.count}"
                )
            if self.json is not None:
                try:
                    json.loads(self.json)
                except ValueError:
                    raise CaseFormatError(f"the data of {block.name} is damaged") from None
            self.inflater, self.json = None, None


def _block(entry: dict) -> _Block:
    name, offset, length = entry["name"], entry["offset"], entry["length"]
    if not isinstance(name, str) or not all(isinstance(n, int) and n >= 0 for n in (offset, length)):
        raise ValueError(f"bad block entry {entry!r}")
    is_json = entry["kind"] == "set" or not entry.get("index") or entry["dtype"] == "json"
    if is_json:
        return _Block(name, offset, offset + length, 0, 0)
    dtype = np.dtype(entry["dtype"])
    count = entry["count"]
    if dtype.hasobject or dtype.itemsize == 0 or not isinstance(count, int) or count < 0:
        raise ValueError(f"bad block entry {entry!r}")
    return _Block(name, offset, offset + length, dtype.itemsize, count)
