"""A second, raw mapping of a segment, outside the library (test helper), on Linux and Windows.

Tests use it to read a real segment's bytes, to poke words into a live one, and to plant
arbitrary bytes under a name (corrupt or foreign segments), the way a hostile or broken peer
would. Linux: the /dev/shm file. Windows: the named file mapping itself (a pagefile-backed
section under the same name the library uses), opened or created with kernel32 via ctypes.

    read_bytes(name, size)      the first `size` bytes (Linux: size None = the whole file)
    poke_u64(name, off, value)  store a little-endian u64 at `off`
    exists(name)                is there an object under this name
    plant(name, data, hold)     context manager: a new object holding exactly `data`; on Linux
                                `hold` takes a shared flock as a live creator does; on Windows a
                                section exists only while somebody holds it, so the planter is
                                always a holder. A section cannot be empty: b"" is planted as
                                one zero byte there.
"""
from __future__ import annotations

import contextlib
import os
import struct
import sys

WINDOWS = sys.platform == "win32"

if WINDOWS:
    import ctypes
    from ctypes import wintypes

    _k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _k32.CreateFileMappingW.restype = wintypes.HANDLE
    _k32.CreateFileMappingW.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD, wintypes.DWORD,
                                        wintypes.DWORD, wintypes.LPCWSTR]
    _k32.OpenFileMappingW.restype = wintypes.HANDLE
    _k32.OpenFileMappingW.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.LPCWSTR]
    _k32.MapViewOfFile.restype = ctypes.c_void_p
    _k32.MapViewOfFile.argtypes = [wintypes.HANDLE, wintypes.DWORD, wintypes.DWORD, wintypes.DWORD, ctypes.c_size_t]
    _k32.UnmapViewOfFile.argtypes = [ctypes.c_void_p]
    _k32.CloseHandle.argtypes = [wintypes.HANDLE]
    INVALID_HANDLE_VALUE = wintypes.HANDLE(-1)
    PAGE_READWRITE = 0x04
    FILE_MAP_WRITE, FILE_MAP_READ = 0x0002, 0x0004
    ERROR_ALREADY_EXISTS = 183

    def _err(call: str, name: str):
        e = ctypes.get_last_error()
        return OSError(None, f"{call}('{name}'): {ctypes.FormatError(e)}", None, e)

    @contextlib.contextmanager
    def _view(name: str, size: int, handle=None):
        h = handle or _k32.OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE, False, name)
        if not h:
            raise _err("OpenFileMappingW", name)
        try:
            p = _k32.MapViewOfFile(h, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, size)
            if not p:
                raise _err("MapViewOfFile", name)
            try:
                yield p
            finally:
                _k32.UnmapViewOfFile(p)
        finally:
            if handle is None:
                _k32.CloseHandle(h)

    def read_bytes(name: str, size: int) -> bytes:
        with _view(name, size) as p:
            return ctypes.string_at(p, size)

    def poke_u64(name: str, offset: int, value: int) -> None:
        with _view(name, offset + 8) as p:
            ctypes.memmove(p + offset, struct.pack("<Q", value), 8)

    def exists(name: str) -> bool:
        h = _k32.OpenFileMappingW(FILE_MAP_READ, False, name)
        if h:
            _k32.CloseHandle(h)
        return bool(h)

    @contextlib.contextmanager
    def plant(name: str, data: bytes, hold: bool = True):
        size = max(len(data), 1)
        h = _k32.CreateFileMappingW(INVALID_HANDLE_VALUE, None, PAGE_READWRITE, 0, size, name)
        if not h:
            raise _err("CreateFileMappingW", name)
        try:
            if ctypes.get_last_error() == ERROR_ALREADY_EXISTS:
                raise FileExistsError(f"{name} exists already")
            if data:
                with _view(name, size, handle=h) as p:
                    ctypes.memmove(p, data, len(data))
            yield
        finally:
            _k32.CloseHandle(h)

else:
    import fcntl
    import mmap
    from pathlib import Path

    def _path(name: str) -> Path:
        return Path("/dev/shm") / name

    def read_bytes(name: str, size: int | None = None) -> bytes:
        data = _path(name).read_bytes()
        return data if size is None else data[:size]

    def poke_u64(name: str, offset: int, value: int) -> None:
        with open(_path(name), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
            m[offset:offset + 8] = struct.pack("<Q", value)

    def exists(name: str) -> bool:
        return _path(name).exists()

    @contextlib.contextmanager
    def plant(name: str, data: bytes, hold: bool = True):
        path = _path(name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.write(fd, bytes(data))
            if hold:  # act as a live holder (a creator): open() then trusts it is in use
                fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
