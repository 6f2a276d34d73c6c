"""Dataset digests: content and relative names, whatever the folder is made of."""

from __future__ import annotations

import shutil

from tracking.datasets import files_digest


def _folder_digest(folder):
    return files_digest(folder, sorted(folder.glob("*/*.png")))


def test_digest_of_links_equals_copy(tmp_path, aidpath):
    linked, copied = tmp_path / "linked", tmp_path / "copied"
    for kind in ("images", "masks"):
        (linked / kind).mkdir(parents=True)
        (copied / kind).mkdir(parents=True)
        for name in ("10003.png", "10014.png"):
            (linked / kind / name).symlink_to(aidpath / kind / name)
            shutil.copy(aidpath / kind / name, copied / kind / name)
    assert _folder_digest(linked) == _folder_digest(copied)


def test_digest_changes_with_rename(tmp_path, aidpath):
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    shutil.copy(aidpath / "images" / "10003.png", folder / "images" / "10003.png")
    before = _folder_digest(folder)
    (folder / "images" / "10003.png").rename(folder / "images" / "10004.png")
    assert _folder_digest(folder) != before
