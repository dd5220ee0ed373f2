"""Sharing results through DVC remotes: push from one repo, pull into fresh git clones, nothing re-runs.

One tiny pipeline run (module fixture `origin`) is pushed to a local-folder remote and to a WebDAV server on
loopback; every clone must get byte-identical outputs and run no stage.
"""

import hashlib
import shutil
import threading
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, tiny_params, write_params
from dvcrepo import BIN, call, init_repo, ran, sh

DVC = str(BIN / "dvc")
# A file output, a model folder, the LanceDB index folder and metrics; about 30 s with the tiny model.
TARGETS = ("synth", "base_model", "tag", "index")


def tracked(repo: Path) -> dict[str, str]:
    """sha256 of every file under every output path in ``repo``'s dvc.lock, by path."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    paths = [repo / out["path"] for stage in lock["stages"].values() for out in stage["outs"]]
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))]
    return {
        str(f.relative_to(repo)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()
    }


@pytest.fixture(scope="module")
def origin(tmp_path_factory, tiny_model) -> Path:
    """A git repo where TARGETS have run, with dvc.lock and the .gitignore files DVC wrote committed."""
    root = tmp_path_factory.mktemp("origin")
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, root / name)
    for name in ("stages", "datakit"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    write_params(root, tiny_params(root, tiny_model))
    init_repo(root)
    assert ran(sh(DVC, "repro", *TARGETS, cwd=root)) == set(TARGETS)
    sh("git", "add", "-A", cwd=root)  # dvc.lock and data/**/.gitignore; the outputs themselves are ignored
    sh("git", "commit", "-qm", "run", cwd=root)
    return root


def add_remote(repo: Path, name: str, url: str) -> None:
    """Adds ``name`` as the default remote in the committed .dvc/config, as a team would share it."""
    sh(DVC, "remote", "add", "-f", "-d", name, url, cwd=repo)
    sh("git", "commit", "-qm", f"remote {name}", ".dvc/config", cwd=repo)


def clone(origin: Path, dest: Path) -> Path:
    sh("git", "clone", "-q", str(origin), str(dest), cwd=origin.parent)
    return dest


def assert_pulled(repo: Path, expected: dict[str, str]) -> None:
    """Byte-identical outputs, and DVC sees nothing to do: status empty, `repro` runs no stage."""
    assert tracked(repo) == expected
    assert sh(DVC, "status", "--json", *TARGETS, cwd=repo).strip() == "{}"
    again = sh(DVC, "repro", *TARGETS, cwd=repo)
    assert ran(again) == set()
    for stage in TARGETS:
        assert f"Stage '{stage}' didn't change, skipping" in again


def test_local_remote_clones_get_identical_outputs_and_run_nothing(origin, tmp_path):
    expected = tracked(origin)
    assert any(p.startswith("data/index/lancedb/") for p in expected)  # the index folder travels too
    add_remote(origin, "shared", str(tmp_path / "remote"))
    assert "files pushed" in sh(DVC, "push", "--run-cache", cwd=origin)

    # `dvc pull` then `dvc repro`: outputs come from dvc.lock's hashes; every stage is unchanged.
    first = clone(origin, tmp_path / "first")
    assert not (first / "data/index/lancedb").exists()
    # Targets: a bare `dvc pull` also wants the stages never run here (no hashes in dvc.lock) and fails.
    sh(DVC, "pull", *TARGETS, cwd=first)
    assert_pulled(first, expected)

    # `dvc repro --pull`: each unchanged stage with missing outputs is pulled, not run.
    second = clone(origin, tmp_path / "second")
    out = sh(DVC, "repro", "--pull", *TARGETS, cwd=second)
    assert ran(out) == set()
    for stage in TARGETS:
        assert f"Pulling data for stage: '{stage}'" in out
    assert_pulled(second, expected)

    # The run-cache alone is enough: a run that was pushed (--run-cache) but whose dvc.lock was never
    # committed is checked out of the run-cache, and the regenerated dvc.lock holds the same hashes.
    third = clone(origin, tmp_path / "third")
    (third / "dvc.lock").unlink()
    out = sh(DVC, "repro", "--pull", *TARGETS, cwd=third)
    assert ran(out) == set()
    for stage in TARGETS:
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in out
    assert yaml.safe_load((third / "dvc.lock").read_text()) == yaml.safe_load(
        (origin / "dvc.lock").read_text()
    )
    assert_pulled(third, expected)


@pytest.fixture
def webdav(tmp_path):
    """A WebDAV server on 127.0.0.1 (a free port) sharing a temp folder, HTTP basic auth for one user.

    Yields (url, user, password); the server stops when the test ends.
    """
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    share = tmp_path / "share"
    share.mkdir()
    user, password = "alice", "s3cret-pw"
    app = WsgiDAVApp(
        {
            "provider_mapping": {"/": str(share)},
            "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
            # Basic only: what a DVC user/password remote sends (digest is wsgidav's default).
            "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
            "verbose": 1,
        }
    )
    server = wsgi.Server(("127.0.0.1", 0), app)
    server.prepare()  # binds, so bind_addr holds the port the OS picked
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield f"webdav://127.0.0.1:{server.bind_addr[1]}/", user, password
    server.stop()
    thread.join(timeout=10)


def set_credentials(repo: Path, remote: str, user: str, password: str) -> None:
    sh(DVC, "remote", "modify", "--local", remote, "user", user, cwd=repo)
    sh(DVC, "remote", "modify", "--local", remote, "password", password, cwd=repo)


def test_webdav_remote_password_stays_local_and_clone_runs_nothing(origin, webdav, tmp_path):
    url, user, password = webdav
    expected = tracked(origin)
    add_remote(origin, "dav", url)

    # A wrong password is an authentication error and a non-zero exit, not a silent partial push.
    set_credentials(origin, "dav", user, "wrong")
    failed = call(DVC, "push", "--run-cache", cwd=origin)
    assert failed.returncode != 0 and "401" in failed.stderr
    set_credentials(origin, "dav", user, password)
    assert "files pushed" in sh(DVC, "push", "--run-cache", cwd=origin)

    # Credentials live only in .dvc/config.local, which git ignores; the shared config has the url.
    sh("git", "check-ignore", "-q", ".dvc/config.local", cwd=origin)
    assert password in (origin / ".dvc/config.local").read_text()
    committed = sh("git", "show", "HEAD:.dvc/config", cwd=origin)
    assert url in committed and "password" not in committed and password not in committed
    assert sh("git", "status", "--porcelain", cwd=origin) == ""

    copy = clone(origin, tmp_path / "copy")
    assert not (copy / ".dvc/config.local").exists()
    set_credentials(copy, "dav", user, "wrong")
    failed = call(DVC, "pull", *TARGETS, cwd=copy)
    assert failed.returncode != 0 and "401" in failed.stderr
    assert not (copy / "data/base_model").exists()

    set_credentials(copy, "dav", user, password)
    sh(DVC, "pull", *TARGETS, cwd=copy)
    assert_pulled(copy, expected)


@pytest.mark.parametrize("pipeline", ["dvc.yaml", "recipes/isheep/dvc.yaml"])
def test_every_output_goes_to_the_cache(pipeline):
    stages = yaml.safe_load((ROOT / pipeline).read_text())["stages"]
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path, opts = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
                assert opts.get("cache", True), (
                    f"{pipeline}: {name}: {kind} {path} has cache: false: `dvc push`/`dvc pull` skip it (it is "
                    "meant for git) and DVC keeps no run-cache for a stage with such an out, so a collaborator's "
                    "clone would re-run the stage instead of pulling it (README: Sharing datasets)."
                )
                assert not opts.get("persist", False), (
                    f"{pipeline}: {name}: {kind} {path} has persist: true, which keeps the stage out of the "
                    "run-cache (`dvc repro --pull` cannot restore it without dvc.lock)."
                )
