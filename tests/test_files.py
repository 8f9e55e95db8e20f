import json
import os

import pytest

from tests.processes import finish, start, wait_for
from utils import files
from utils.files import Busy, CacheError, cached_folder, check_manifest, file_lock, write_manifest

HOLD = """
    import sys, time
    from pathlib import Path
    from utils.files import file_lock
    with file_lock(sys.argv[1] if len(sys.argv) > 1 else "{target}"):
        Path("{started}").touch()
        time.sleep({seconds})
"""


def test_a_held_lock_names_its_holder_then_is_free_and_gone(tmp_path):
    target, started = tmp_path / "cache", tmp_path / "started"
    holder = start(HOLD.format(target=target, started=started, seconds=3))
    wait_for(started, holder)
    with pytest.raises(Busy, match=rf"cache is in use by pid {holder.pid} on .*running since .* UTC"):
        with file_lock(target, wait=False):
            pass
    with file_lock(target):  # waits for the holder, then has it
        assert (tmp_path / ".cache.lock").is_file()
        finish(holder)  # the holder had let go: it ends
    assert sorted(p.name for p in tmp_path.iterdir()) == ["started"]  # no lock file left behind


def test_atomic_write_leaves_the_old_file_and_no_temporary_on_failure(tmp_path):
    path = tmp_path / "a.txt"
    files.write_text_atomic(path, "old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def _folder(tmp_path):
    folder = tmp_path / "cache"
    (folder / "sub").mkdir(parents=True)
    (folder / "data.bin").write_bytes(bytes(range(256)) * 10)
    (folder / "sub" / "note.txt").write_text("hello")
    write_manifest(folder, kind="test")
    return folder


def test_manifest_names_the_damaged_file(tmp_path):
    folder = _folder(tmp_path)
    assert check_manifest(folder)["kind"] == "test"
    data = folder / "data.bin"
    data.write_bytes(data.read_bytes()[:100])  # truncated
    with pytest.raises(CacheError, match=rf"{data} does not match its checksum"):
        check_manifest(folder)
    (folder / "sub" / "note.txt").unlink()
    write_manifest(folder)
    os.remove(folder / "data.bin")
    with pytest.raises(CacheError, match=rf"{data} is missing"):
        check_manifest(folder)
    (folder / "manifest.json").write_text('{"sha256": {"data.b')  # a truncated manifest
    with pytest.raises(CacheError, match=r"manifest.json is unreadable \(JSONDecodeError"):
        check_manifest(folder)


def _build(staging):
    (staging / "value.json").write_text(json.dumps(7))
    return 7


def _load(folder):
    return json.loads((folder / "value.json").read_text())


def test_cached_folder_builds_once_and_rebuilds_damage_with_a_warning(tmp_path):
    folder = tmp_path / "cache"
    assert cached_folder(folder, _build, _load, "a test value") == 7
    assert cached_folder(folder, lambda s: pytest.fail("rebuilt an intact cache"), _load, "a test value") == 7
    (folder / "value.json").write_text("7 ")  # changed behind the cache's back
    with pytest.warns(UserWarning, match=rf"a test value at {folder} is damaged \({folder / 'value.json'} does not match"):
        assert cached_folder(folder, _build, _load, "a test value") == 7
    assert cached_folder(folder, lambda s: pytest.fail("rebuilt an intact cache"), _load, "a test value") == 7
    (folder / "value.json").write_text("not json")
    write_manifest(folder)  # a checksum that matches, of a file the loader cannot read
    with pytest.warns(UserWarning, match=r"damaged \(JSONDecodeError"):
        assert cached_folder(folder, _build, _load, "a test value") == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no staging, backup or lock left


BUILD_SLOWLY = """
    import json, os, time
    from pathlib import Path
    from utils.files import cached_folder

    def build(staging):
        Path("{building}").touch()
        with open("{builds}", "a") as log:
            log.write("built\\n")
        while len(list(Path("{ready}").iterdir())) < 2:  # until the other process is at the lock too
            time.sleep(0.1)
        time.sleep(1)
        (staging / "value.json").write_text("42")
        return 42

    Path("{ready}").mkdir(exist_ok=True)
    Path("{ready}", str(os.getpid())).touch()
    print(cached_folder("{folder}", build, lambda f: json.loads((f / "value.json").read_text()), "a slow value"))
"""


def test_two_processes_build_an_empty_cache_once(tmp_path):
    code = BUILD_SLOWLY.format(building=tmp_path / "building", builds=tmp_path / "builds", ready=tmp_path / "ready", folder=tmp_path / "cache")
    first = start(code)
    wait_for(tmp_path / "building", first)
    second = start(code)  # arrives while the first builds: waits, then loads the finished folder
    (out1, _), (out2, err2) = finish(first), finish(second)
    assert out1.strip() == out2.strip() == "42"
    assert (tmp_path / "builds").read_text() == "built\n"
    assert f"waiting for pid {first.pid}" in err2


def test_a_read_only_cache_is_checked_and_loaded_without_a_lock(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    cached_folder(folder, _build, _load, "a test value")
    writable = os.access
    monkeypatch.setattr(files.os, "access", lambda path, mode: mode != os.W_OK and writable(path, mode))
    monkeypatch.setattr(files, "file_lock", lambda *a, **k: pytest.fail("locked a read-only cache"))
    assert cached_folder(folder, lambda s: pytest.fail("rebuilt"), _load, "a test value") == 7
    (folder / "value.json").write_text("8")
    with pytest.raises(CacheError, match=r"value.json does not match its checksum"):
        cached_folder(folder, _build, _load, "a test value")
