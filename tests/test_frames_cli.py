"""The CLI knows Frames: ls and inspect show a frames segment through the core's peek (no byte
parsing in Python), a corrupt one is reported, never crashed on; looking changes no lifetime."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import sharedstate as ss

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ls reads /dev/shm")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sharedstate", *args], capture_output=True, text=True, timeout=120)


def test_ls_and_inspect_show_frames(unique_name):
    with ss.Frames.create(unique_name, (48, 64, 4), np.uint8, readers=3) as fr:
        fr.publish(np.zeros((48, 64, 4), np.uint8))
        fr.publish(np.ones((48, 64, 4), np.uint8))
        with fr.latest():
            r = cli("ls", "--json")
            assert r.returncode == 0, r.stderr
            mine = [d for d in json.loads(r.stdout) if d["name"] == unique_name]
            assert len(mine) == 1
            d = mine[0]
            assert d["kind"] == "frames" and d["problem"] is None
            assert d["shape"] == "48x64x4" and d["element"] == "u1" and d["readers"] == 3 and d["slots"] == 5
            assert d["version"] == 2 and d["pins_held"] == 1 and d["holders_alive"]
            r = cli("ls")
            assert "frames 48x64x4 of u1, readers 3, 1 pinned" in r.stdout
        r = cli("inspect", unique_name)
        assert r.returncode == 0, r.stderr
        assert "frames" in r.stdout and "48x64x4" in r.stdout
    # looking kept nothing alive: the last holder's close removed it
    assert cli("inspect", unique_name).returncode == 1


def test_a_corrupt_frames_header_is_reported(unique_name):
    from _rawseg import plant, read_bytes
    with ss.Frames.create(unique_name + "-ok", (8,), np.float32) as fr:
        data = bytearray(read_bytes(unique_name + "-ok", fr.info()["segment_size"]))
    data[64] ^= 0xFF  # slot_count: no longer readers + 2
    with plant(unique_name, bytes(data)):
        r = cli("inspect", "--json", unique_name)
        assert r.returncode == 1
        d = json.loads(r.stdout)
        assert d["kind"] == "frames" and d["problem"] and "slot count" in d["problem"]
