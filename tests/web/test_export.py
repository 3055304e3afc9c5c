"""``taskhub export-static DIR`` as a real process, against what a real ``taskhub serve`` serves."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from taskhub.web.assets import packaged_root
from tests.servers import free_port, serve
from tests.test_cli import run

STATIC = packaged_root()
FILES = sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file() and p.name[0] != ".")


def exported(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_export_equals_what_the_server_serves_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "cdn"
    first = run(["export-static", str(out)], tmp_path)
    assert first.returncode == 0, first.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    # Every file of the static directory but the page, found by walking it.
    assert sorted(manifest) == [f for f in FILES if f != "index.html"]
    assert first.stdout == f"{len(manifest)} files written, 0 unchanged, manifest.json in {out}\n"
    files = exported(out)
    assert sorted(files) == sorted(["manifest.json", *manifest.values()])
    for plain, name in manifest.items():
        digest = hashlib.sha256(files[name]).hexdigest()[:12]
        stem, suffix = plain.rsplit(".", 1)
        assert name == f"{stem}.{digest}.{suffix}"

    (tmp_path / "data").mkdir()
    with serve(tmp_path / "data") as server, server.client() as client:
        page = client.get("/").text
        for plain, name in manifest.items():
            r = client.get(f"/static/{name}")
            assert r.status_code == 200, name
            assert r.content == files[name], name
            assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        referenced = set(re.findall(r'"/static/([^"]+)"', page))
        hashed_in_page = {u for u in referenced if u in files}
        # The page names hashed files only, all of them exported: the import map's keys are plain URLs.
        assert hashed_in_page == {n for p, n in manifest.items() if p.endswith((".js", ".css"))} | {
            manifest["favicon.svg"]
        }
        assert referenced - hashed_in_page == {p for p in manifest if p.endswith((".js", ".css"))}


def test_export_is_idempotent_and_keeps_older_versions(tmp_path: Path) -> None:
    out = tmp_path / "cdn"
    assert run(["export-static", str(out)], tmp_path).returncode == 0
    older = out / "js" / "app.0123456789ab.js"  # what an earlier deploy left: kept for its pages
    older.write_text("old")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    again = run(["export-static", str(out)], tmp_path)
    assert again.returncode == 0, again.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert again.stdout == f"0 files written, {len(manifest)} unchanged, manifest.json in {out}\n"
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()} == before

    # A damaged copy is replaced, not trusted because its name exists.
    name = manifest["js/app.js"]
    (out / name).write_text("damaged")
    third = run(["export-static", str(out)], tmp_path)
    assert third.stdout == f"1 files written, {len(manifest) - 1} unchanged, manifest.json in {out}\n"
    assert (out / name).read_bytes() == (STATIC / "js/app.js").read_bytes()


def test_export_into_a_file_fails_with_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    result = run(["export-static", str(blocker)], tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")


def test_serve_refuses_an_invalid_asset_base_url_naming_the_variable(tmp_path: Path) -> None:
    result = run(
        ["serve", "--port", str(free_port())], tmp_path, TASKHUB_ASSET_BASE_URL="https://cdn.example.com/x?v=2"
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid configuration:")
    assert "TASKHUB_ASSET_BASE_URL must be an http(s) URL without query or fragment" in result.stderr
    assert "Traceback" not in result.stderr
