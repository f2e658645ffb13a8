"""Uploaded archives are unpacked safely: no escapes, no links, no bombs; the model inside is found."""

import tarfile
import zipfile

import pytest

from tasks.archive import ArchiveError, ArchiveLimits, find_root_file, safe_extract


def make_zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_a_model_with_its_side_files_unpacks_and_the_root_is_found(tmp_path):
    archive = make_zip(
        tmp_path / "m.zip",
        {
            "model/chair.obj": "v 0 0 0\n",
            "model/chair.mtl": "newmtl a\n",
            "model/tex/wood.jpg": b"\xff\xd8",
            "__MACOSX/._chair.obj": "junk",
        },
    )
    files = safe_extract(archive, tmp_path / "out")
    assert len(files) == 4
    root = find_root_file(tmp_path / "out", None, ["glb", "gltf", "obj", "stl"])
    assert root.name == "chair.obj" and root.parent.name == "model"
    named = find_root_file(tmp_path / "out", "model/chair.mtl", ["obj"])
    assert named.name == "chair.mtl"
    # params.filename is also an output name for some processes: a name the archive
    # does not hold falls back to the guess instead of failing the job.
    assert find_root_file(tmp_path / "out", "output", ["obj"]).name == "chair.obj"
    assert find_root_file(tmp_path / "out", "../../etc/passwd", ["obj"]).name == "chair.obj"
    with pytest.raises(ArchiveError, match="no file this service can open"):
        find_root_file(tmp_path / "out", None, ["step"])


@pytest.mark.parametrize(
    "name", ["../evil.txt", "a/../../evil.txt", "/etc/evil", "C:/evil.txt", "..\\evil.txt"]
)
def test_members_escaping_the_folder_are_refused(tmp_path, name):
    archive = make_zip(tmp_path / "slip.zip", {name: "x"})
    with pytest.raises(ArchiveError, match="outside"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_links_in_archives_are_refused(tmp_path):
    tar_path = tmp_path / "links.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tf:
        info = tarfile.TarInfo("model.obj")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(ArchiveError, match="link"):
        safe_extract(tar_path, tmp_path / "out")

    zip_path = tmp_path / "links.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        info = zipfile.ZipInfo("model.obj")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="link"):
        safe_extract(zip_path, tmp_path / "out2")


def test_zip_bombs_are_refused_before_writing(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.stl", b"\0" * (64 * 1024 * 1024))
    with pytest.raises(ArchiveError, match="limit"):
        safe_extract(bomb, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())  # refused before a byte was written


def test_headers_that_lie_about_sizes_are_refused(tmp_path):
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.stl", b"x" * 1000)
    raw = bytearray(archive.read_bytes())
    # Shrink the declared size in the central directory; the data stays 1000 bytes.
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24 : central + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError):
        safe_extract(archive, tmp_path / "out", ArchiveLimits(max_ratio=1.0))


def test_too_many_files_and_garbage_are_refused(tmp_path):
    many = make_zip(tmp_path / "many.zip", {f"f{i}.txt": "" for i in range(30)})
    with pytest.raises(ArchiveError, match="30 files"):
        safe_extract(many, tmp_path / "out", ArchiveLimits(max_files=20))
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArchiveError, match="cannot read archive"):
        safe_extract(garbage, tmp_path / "out2")
