import io
import os
import stat
import tarfile
import zipfile

import pytest
import torch

from resnetlab.data import load_dataset
from resnetlab.data.archive import extract_archive, extracted_folder
from resnetlab.errors import DataError, DataWarning

from .conftest import noise, write_tree


def _png_bytes(seed):
    buf = io.BytesIO()
    noise(seed).save(buf, format="PNG")
    return buf.getvalue()


def _add(tf, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_tar_gz_of_an_image_tree_is_extracted_once(tmp_path):
    tree = write_tree(tmp_path / "pets" / "train", {"cat": [noise(0), noise(1)], "dog": [noise(2)]})
    write_tree(tree.parent / "test", {"cat": [noise(3)], "dog": [noise(4)]})
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tree.parent, arcname="pets")
    data = load_dataset(str(archive), cache_dir=tmp_path / "c")
    assert len(data.train) == 3 and len(data.val) == 2 and data.class_names == ["cat", "dog"]
    (extracted,) = (tmp_path / "c" / "extracted").iterdir()
    assert extracted.name.startswith("pets-") and (extracted / "pets" / "train" / "cat").is_dir()
    assert extracted_folder(archive, tmp_path / "c") == extracted  # not extracted again
    assert "pets.tar.gz extracted into the cache, once: later runs read that copy" in (
        data.train.notes
    )
    again = load_dataset(str(archive), cache_dir=tmp_path / "c")
    assert "pets.tar.gz read from its copy extracted into the cache" in again.train.notes


def test_an_archive_with_no_cache_to_extract_into_names_the_cache(tmp_path, monkeypatch):
    from resnetlab.errors import ResnetlabError

    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, name in enumerate(["cat/a.png", "dog/c.png"]):
            zf.writestr(f"pets/{name}", _png_bytes(i))
    (tmp_path / "taken").write_text("")  # a cache folder that cannot be made, even by root
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "taken"))
    with pytest.raises(ResnetlabError) as e:
        load_dataset(str(archive))
    assert str(e.value).startswith(f"cannot write {tmp_path / 'taken' / 'extracted'}: ")
    assert "pets.zip is extracted there: set RESNETLAB_CACHE to a folder you can" in str(e.value)


def test_a_copy_extracted_by_another_version_of_extraction_is_not_read(tmp_path, monkeypatch):
    from resnetlab.data import archive as archive_module

    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pets\\cat\\1.png", b"written by a tool that uses backslashes")
    before = extracted_folder(archive, tmp_path / "c")
    monkeypatch.setattr(archive_module, "EXTRACTION_VERSION", archive_module.EXTRACTION_VERSION + 1)
    after = extracted_folder(archive, tmp_path / "c")
    assert after != before and after.parent == before.parent
    assert (after / "pets" / "cat" / "1.png").is_file()


def test_zip_of_an_image_tree(tmp_path):
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, name in enumerate(["cat/a.png", "cat/b.png", "dog/c.png"]):
            zf.writestr(f"pets/{name}", _png_bytes(i))
        zf.writestr("__MACOSX/pets/._a.png", b"resource fork")
    data = load_dataset(str(archive))
    assert data.train.class_counts() == [2, 1] and data.class_names == ["cat", "dog"]


def test_messages_name_an_archives_files_inside_the_archive(tmp_path):
    # Not by their copy extracted into the cache, which the user never saw.
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, name in enumerate(["cat/a.png", "cat/b.png", "dog/c.png", "dog/d.png"]):
            zf.writestr(f"pets/{name}", _png_bytes(i))
        zf.writestr("pets/cat/bad.png", b"damaged")
    with pytest.warns(DataWarning) as caught:
        load_dataset(str(archive), cache_dir=tmp_path / "c")
    assert [str(w.message) for w in caught] == [
        f"{archive}/pets/cat/bad.png: skipped, cannot read it (not an image format Pillow "
        "can read)",
        f"{archive}/pets: skipped 1 of 5 images that could not be read",
    ]
    damaged = tmp_path / "damaged.zip"  # an error too: too many of its files unreadable
    with zipfile.ZipFile(damaged, "w") as zf:
        for name in ["cat/a.png", "cat/b.png", "dog/c.png"]:
            zf.writestr(f"pets/{name}", b"damaged")
    with pytest.raises(DataError) as error:
        load_dataset(str(damaged), cache_dir=tmp_path / "c")
    assert str(error.value).startswith(f"{damaged}/pets: none of 3 sampled images could be read")
    assert str(tmp_path / "c") not in str(error.value)


def test_zip_paths_with_backslashes_unpack_into_folders(tmp_path):
    # Windows PowerShell 5's Compress-Archive writes pets\cat\0.png, against the zip format.
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, name in enumerate(["cat", "cat", "dog", "dog"]):
            zf.writestr(f"pets\\{name}\\{i}.png", _png_bytes(i))
    data = load_dataset(str(archive), cache_dir=tmp_path / "c", val_split=0.5)
    assert data.class_names == ["cat", "dog"]
    (extracted,) = (tmp_path / "c" / "extracted").iterdir()
    assert (extracted / "pets" / "dog" / "3.png").is_file()


def test_zip_names_in_utf8_without_the_flag_are_read_as_utf8(tmp_path):
    # macOS's Archive Utility writes UTF-8 names without the flag that says so; read as
    # cp437, as the zip format's default, the class "kätzchen" would be "k├ñtzchen".
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for i, name in enumerate(["kätzchen", "犬", "kätzchen", "犬"]):
            zf.writestr(f"pets/{name}/{i}.png", _png_bytes(i))
    data = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the flag bits
        at = data.find(signature)
        while at >= 0:
            data[at + offset + 1] &= ~0x08  # bit 11: UTF-8 names
            at = data.find(signature, at + 4)
    archive = tmp_path / "pets.zip"
    archive.write_bytes(bytes(data))
    assert zipfile.ZipFile(archive).namelist()[0] == "pets/k├ñtzchen/0.png"  # as zipfile reads it
    loaded = load_dataset(str(archive), cache_dir=tmp_path / "c", val_split=0.5)
    assert loaded.class_names == ["kätzchen", "犬"]


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_members_are_written_as_they_are(tmp_path, mode):
    # As `tar -czf x.tar.gz -C dir .` writes them: "./" before every name, a folder member
    # after its files, and a file member with permissions and an owner of its own.
    archive = tmp_path / "pets.tar"
    with tarfile.open(archive, mode) as tf:
        _add(tf, "./pets/cat/a.png", _png_bytes(0))
        _add(tf, "./pets/dog/b.png", _png_bytes(1))
        folder = tarfile.TarInfo("./pets/empty")
        folder.type = tarfile.DIRTYPE
        tf.addfile(folder)
        setuid = tarfile.TarInfo("./pets/cat/c.png")
        data = _png_bytes(2)
        setuid.size, setuid.mode, setuid.uid = len(data), 0o4777, 12345
        tf.addfile(setuid, io.BytesIO(data))
    extract_archive(archive, tmp_path / "dest")
    pets = tmp_path / "dest" / "pets"
    assert (pets / "cat" / "a.png").read_bytes() == _png_bytes(0)
    assert (pets / "dog" / "b.png").read_bytes() == _png_bytes(1)
    assert (pets / "cat" / "c.png").read_bytes() == _png_bytes(2) and (pets / "empty").is_dir()
    assert not (pets / "cat" / "c.png").stat().st_mode & (stat.S_ISUID | stat.S_IXUSR)


@pytest.mark.parametrize("name", ["../evil.png", "pets/../../evil.png", "/tmp/evil.png"])
def test_tar_members_escaping_the_folder_are_refused(tmp_path, name):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tf:
        _add(tf, "pets/cat/a.png", _png_bytes(0))
        _add(tf, name, b"payload")
    dest = tmp_path / "x" / "dest"
    with pytest.raises(
        DataError,
        match=r"bad\.tar: member '.*evil\.png' (would be written outside "
        r"the extraction folder|has an absolute path)",
    ):
        extract_archive(archive, dest)
    assert not (tmp_path / "x" / "evil.png").exists() and not (tmp_path / "evil.png").exists()
    assert not dest.exists()  # what came before the refused member is removed too


def test_a_tar_member_whose_name_holds_a_nul_is_refused_in_one_line(tmp_path):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tf:
        _add(tf, "pets/cat/a.png", _png_bytes(0))
        _add(tf, "pets/k\u00e4t\x00ze/b.png", _png_bytes(1))  # kept whole in a PAX header
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=r"bad\.tar: member .* has a NUL character in its name"):
        extract_archive(archive, dest)
    assert not dest.exists()


def test_zip_member_escaping_the_folder_is_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pets/cat/a.png", _png_bytes(0))
        zf.writestr("../../evil.png", b"payload")
    with pytest.raises(DataError, match=r"bad\.zip: member '\.\./\.\./evil\.png' would be written"):
        load_dataset(str(archive), cache_dir=tmp_path / "c")
    assert not (tmp_path / "evil.png").exists()
    assert not list((tmp_path / "c" / "extracted").iterdir())  # no half-extracted folder left


def test_tar_symlink_is_refused(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        link = tarfile.TarInfo("pets/cat/a.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(DataError, match=r"member 'pets/cat/a\.png' is a link"):
        extract_archive(archive, tmp_path / "dest")


def test_corrupt_archive(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match=r"broken\.tar\.gz: cannot extract it"):
        load_dataset(str(archive))


def test_an_archive_this_user_may_not_read_is_named_so(tmp_path, monkeypatch):
    # Downloaded by another account (chmod 600): it was "cannot extract it (PermissionError:
    # [Errno 13] Permission denied: ...); copy it again if a copy or download of it stopped".
    # Root reads it, so the kernel's refusal is made here.
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(write_tree(tmp_path / "pets", {"cat": [noise(0)], "dog": [noise(1)]}), "pets")
    access, opener = os.access, tarfile.open
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: str(p) != str(archive) and access(p, mode, **kw)
    )

    def refused(name=None, *args, **kwargs):
        if str(name) == str(archive):
            raise PermissionError(13, "Permission denied", str(name))
        return opener(name, *args, **kwargs)

    monkeypatch.setattr(tarfile, "open", refused)
    with pytest.raises(DataError) as caught:
        extract_archive(archive, tmp_path / "dest")
    assert str(caught.value) == (
        f"{archive}: no permission to read it; give yourself read access to it (chmod u+r)"
    )
    assert not (tmp_path / "dest").exists()


def test_a_zip_cut_short_is_named_as_one(tmp_path):
    # A zip lists its files at its end: a copy that stopped lost the list, and was read
    # as a tar ("ReadError: truncated header").
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w") as zf:
        for i in range(4):
            zf.writestr(f"pets/{'cat' if i % 2 else 'dog'}/{i}.png", _png_bytes(i))
    cut = tmp_path / "photos.zip"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError) as caught:
        load_dataset(str(cut))
    assert str(caught.value) == (
        f"{cut}: a zip archive cut short (the list of its files, at its end, is missing): "
        "copy it again if a copy or download of it stopped"
    )


def test_an_empty_or_damaged_archive_says_what_to_do(tmp_path):
    empty = tmp_path / "photos.zip"
    empty.write_bytes(b"")
    with pytest.raises(DataError) as caught:
        load_dataset(str(empty))
    assert str(caught.value) == (
        f"{empty} is empty (0 bytes), as a copy or download that failed leaves it; copy it again"
    )
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError) as caught:
        load_dataset(str(broken))
    assert str(caught.value).endswith(
        "; copy it again if a copy or download of it stopped, or extract it yourself and give "
        "the folder"
    )


def test_unsupported_file(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match=r"data\.csv: not a data set: expected an \.h5 file"):
        load_dataset(str(path))


def test_zip_symlink_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("pets/cat/a.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match=r"member 'pets/cat/a\.png' is a link or special file"):
        extract_archive(archive, tmp_path / "dest")


@pytest.mark.slow
def test_real_cifar10_jpg_archive(shared_data, tmp_path):
    data = load_dataset(str(shared_data / "cifar10-jpg.tar.gz"), cache_dir=tmp_path / "c")
    assert data.train.images.shape == (50_000, 32, 32, 3) and len(data.val) == 10_000
    assert data.class_names[:3] == ["airplane", "automobile", "bird"]
    assert data.train.class_counts() == [5000] * 10 and data.val.class_counts() == [1000] * 10
    again = load_dataset(str(shared_data / "cifar10-jpg.tar.gz"), cache_dir=tmp_path / "c")
    assert torch.equal(again.train.images, data.train.images)


def test_notes_name_an_archives_folders_inside_the_archive(tmp_path):
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, name in enumerate(["cat/a.png", "cat/b.png", "dog/c.png", "dog/d.png"]):
            for split in ("train", "val"):
                zf.writestr(f"pets/{split}/{name}", _png_bytes(i + 4 * (split == "val")))
        zf.writestr("pets/misc/x/e.png", _png_bytes(9))
        zf.writestr("pets/stray.png", _png_bytes(10))
    data = load_dataset(str(archive), cache_dir=tmp_path / "c")
    assert f"folders in {archive}/pets other than the splits ignored: misc" in data.train.notes
    assert (
        f"1 image directly in {archive}/pets ignored (stray.png): not in a split's class folder"
        in data.train.notes
    )


def test_only_the_whole_extracted_folder_is_named_as_the_archive(tmp_path, monkeypatch):
    from resnetlab import errors
    from resnetlab.errors import as_given, name_as_given

    monkeypatch.setattr(errors, "_GIVEN_AS", {})  # none of the other tests' archives
    monkeypatch.chdir(tmp_path)
    name_as_given("c/extracted/pets-0a1b", "pets.zip")
    assert as_given("c/extracted/pets-0a1b/cat/1.png: skipped") == "pets.zip/cat/1.png: skipped"
    absolute = tmp_path / "c" / "extracted" / "pets-0a1b"
    assert as_given(f"in {absolute}/cat") == "in pets.zip/cat"  # spelled from the root too
    for other in [
        "abc/extracted/pets-0a1b/x",
        "c/extracted/pets-0a1b.77.tmp",
        "/x/c/extracted/pets-0a1b",
    ]:
        assert as_given(other) == other


def test_an_archive_of_an_hdf5_file_says_to_extract_it(tmp_path):
    # "give that file as data" named a file inside the archive, which no path reaches.
    archive = tmp_path / "signs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train_signs.h5", b"\x89HDF")
    with pytest.raises(DataError) as caught:
        load_dataset(str(archive))
    assert str(caught.value).endswith(
        "it holds train_signs.h5: extract it and give that file as data"
    )
