"""A bridge mirror's source record (FORMAT.md "Mirrors"): in the segment, seen by every process,
validated like the rest of the header. Needs no Zenoh: the record is the core's."""
from __future__ import annotations

import struct
import subprocess
import sys
import threading

import pytest

import sharedstate as ss
from _rawseg import plant, read_bytes

KEY = "sharedstate/gamepc/ControllerMemory"


def test_mirror_records_key_and_liveness_for_every_process(unique_name):
    with ss.SharedState._create_mirror(unique_name, ss.CONTROLLER, KEY) as m:
        src = m.info()["source"]
        assert src == {"key": KEY, "alive": False, "changes": 0}
        m.write(x=5)
        v = m.version
        woke = []
        t = threading.Thread(target=lambda: woke.append(m.wait(since=v, timeout=10)))
        t.start()
        m._set_source_alive(True)  # the change moves the version: a waiter wakes to see it
        t.join(10)
        assert woke and woke[0] == v + 1
        assert m.read().x == 5  # the payload is unchanged
        code = ("import sharedstate as ss, json; s = ss.SharedState.open(%r); "
                "print(json.dumps(s.info()['source'])); s.close()" % unique_name)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert '"alive": true' in out.stdout and KEY in out.stdout, out.stderr
        m._set_source_alive(True)  # no change: no write
        assert m.version == v + 1
        m._set_source_alive(False)
        assert m.info()["source"] == {"key": KEY, "alive": False, "changes": 2}
        # reused by a later importer of the same key and layout; anything else is refused
        again = ss.SharedState._create_mirror(unique_name, ss.CONTROLLER, KEY)
        again.close()
        with pytest.raises(ss.LayoutMismatchError):
            ss.SharedState._create_mirror(unique_name, [("a", "f8")], KEY)
        with pytest.raises(FileExistsError):
            ss.SharedState._create_mirror(unique_name, ss.CONTROLLER, "other/key")


def test_a_plain_state_is_no_mirror(unique_name):
    with ss.SharedState.create(unique_name, ss.CONTROLLER) as st:
        assert "source" not in st.info()
        with pytest.raises(ValueError, match="not a mirror"):
            st._set_source_alive(True)


@pytest.mark.parametrize("damage", ["key_len", "checksum", "no_room"])
def test_a_damaged_source_record_is_corrupt(unique_name, damage):
    with ss.SharedState._create_mirror(unique_name + "-ok", ss.CONTROLLER, KEY) as m:
        info = m.info()
        data = bytearray(read_bytes(unique_name + "-ok", info["segment_size"]))
    rec = 256 + 64 * ((48 * len(ss.CONTROLLER) + 63) // 64)  # after the field table, 64-aligned
    if damage == "key_len":
        struct.pack_into("<I", data, rec + 8, 241)
    elif damage == "checksum":
        data[rec + 16] ^= 0x20
    else:  # the flag says mirror, but header_size leaves no room: re-checksummed so only that is wrong
        struct.pack_into("<I", data, 12, rec)
        struct.pack_into("<Q", data, 16, rec + 2 * info["slot_stride"])
        data = data[:rec] + data[rec + 256:]
        data = _rechecksum(data)
    with plant(unique_name, bytes(data)):
        with pytest.raises(ss.CorruptSegmentError, match="source record|no room"):
            ss.SharedState.open(unique_name)


def _rechecksum(data: bytearray) -> bytearray:
    def fnv(b: bytes, h: int = 2166136261) -> int:
        for c in b:
            h = ((h ^ c) * 16777619) & 0xFFFFFFFF
        return h
    pre = bytearray(data[8:64])
    pre[48 - 8:52 - 8] = b"\0\0\0\0"
    count = struct.unpack_from("<I", data, 36)[0]
    struct.pack_into("<I", data, 48, fnv(bytes(data[256:256 + 48 * count]), fnv(bytes(pre))))
    return data
