"""Token files: generated key file, rotation by rewrite and by the Kubernetes `..data` symlink swap,
and half-done rotations that must keep the previous tokens."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import grpc
import pytest
from grpc import aio

from modelfleet.server.rpc.auth import INFERENCE, MANAGEMENT, TokenAuthInterceptor, TokenFileError, TokenStore
from modelfleet.server.settings import AuthSettings


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def valid(store: TokenStore, scope: str, token: str) -> bool:
    return store.check(scope, bearer(token))


class SecretVolume:
    """A folder laid out as kubelet mounts a Secret: `token -> ..data/token`, `..data -> ..<ts>/`.

    An update writes a new timestamped folder, swaps `..data` atomically (rename of a new
    symlink over the old one) and deletes the old folder, exactly kubelet's AtomicWriter order.
    """

    def __init__(self, root: Path, content: str) -> None:
        self.root = root
        root.mkdir()
        self.generation = 0
        self.current = self._write_generation(content)
        (root / "..data").symlink_to(self.current.name)
        (root / "token").symlink_to("..data/token")

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    def _write_generation(self, content: str) -> Path:
        self.generation += 1
        folder = self.root / f"..2026_01_01_00_00_0{self.generation}.{self.generation:09d}"
        folder.mkdir()
        (folder / "token").write_text(content)
        return folder

    def update(self, content: str) -> None:
        old, self.current = self.current, self._write_generation(content)
        (self.root / "..data_tmp").symlink_to(self.current.name)
        os.replace(self.root / "..data_tmp", self.root / "..data")
        (old / "token").unlink(missing_ok=True)
        old.rmdir()


def test_without_token_files_tokens_are_generated_into_a_0600_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "conf" / "key_file.json"
    store = TokenStore(AuthSettings(key_file=key_file))
    assert store.key_file == key_file
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = json.loads(key_file.read_text())
    assert set(keys) == {MANAGEMENT, INFERENCE}
    management, inference = keys[MANAGEMENT]["key"], keys[INFERENCE]["key"]
    assert len(management) >= 40 and len(inference) >= 40 and management != inference
    assert valid(store, MANAGEMENT, management) and not valid(store, MANAGEMENT, inference)
    assert valid(store, INFERENCE, inference) and not valid(store, INFERENCE, management)
    assert [p.name for p in key_file.parent.iterdir()] == ["key_file.json"]  # no temp file left


def test_a_world_readable_key_file_left_from_before_is_replaced_by_a_0600_one(tmp_path: Path) -> None:
    key_file = tmp_path / "key_file.json"
    key_file.write_text("{}")
    key_file.chmod(0o644)
    TokenStore(AuthSettings(key_file=key_file))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert set(json.loads(key_file.read_text())) == {MANAGEMENT, INFERENCE}


def test_each_start_generates_new_tokens(tmp_path: Path) -> None:
    key_file = tmp_path / "key_file.json"
    TokenStore(AuthSettings(key_file=key_file))
    first = json.loads(key_file.read_text())
    TokenStore(AuthSettings(key_file=key_file))
    assert json.loads(key_file.read_text()) != first


def test_only_scopes_without_a_file_get_a_generated_token(tmp_path: Path) -> None:
    (tmp_path / "management").write_text("given\n")
    key_file = tmp_path / "key_file.json"
    store = TokenStore(AuthSettings(management_token_file=tmp_path / "management", key_file=key_file))
    keys = json.loads(key_file.read_text())
    assert set(keys) == {INFERENCE}
    assert valid(store, MANAGEMENT, "given") and valid(store, INFERENCE, keys[INFERENCE]["key"])


def test_with_both_files_no_key_file_is_written(tmp_path: Path) -> None:
    (tmp_path / "m").write_text("m\n")
    (tmp_path / "i").write_text("i\n")
    key_file = tmp_path / "key_file.json"
    store = TokenStore(
        AuthSettings(management_token_file=tmp_path / "m", inference_token_file=tmp_path / "i", key_file=key_file)
    )
    assert store.key_file is None and not key_file.exists()


@pytest.mark.parametrize("content", [None, "", "\n  \n"])
def test_a_token_file_that_is_missing_or_empty_at_start_stops_the_server(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "management"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TokenFileError, match="management"):
        TokenStore(AuthSettings(management_token_file=path, key_file=tmp_path / "k.json"))


def test_rewriting_the_file_rotates_with_an_overlap(tmp_path: Path) -> None:
    path = tmp_path / "inference"
    path.write_text("old\n")
    store = TokenStore(AuthSettings(inference_token_file=path, key_file=tmp_path / "k.json"))
    path.write_text("old\nnew\n")
    store.reload_now()
    assert valid(store, INFERENCE, "old") and valid(store, INFERENCE, "new")
    path.write_text("new\n")
    store.reload_now()
    assert not valid(store, INFERENCE, "old") and valid(store, INFERENCE, "new")


def test_a_kubernetes_secret_swap_rotates_with_an_overlap(tmp_path: Path) -> None:
    volume = SecretVolume(tmp_path / "secret", "old\n")
    store = TokenStore(AuthSettings(management_token_file=volume.token_file, key_file=tmp_path / "k.json"))
    assert valid(store, MANAGEMENT, "old")
    volume.update("old\nnew\n")
    store.reload_now()
    assert valid(store, MANAGEMENT, "old") and valid(store, MANAGEMENT, "new")
    volume.update("new\n")
    store.reload_now()
    assert not valid(store, MANAGEMENT, "old") and valid(store, MANAGEMENT, "new")


def test_a_swap_to_the_same_size_and_time_is_still_seen(tmp_path: Path) -> None:
    volume = SecretVolume(tmp_path / "secret", "aaaa\n")
    store = TokenStore(AuthSettings(management_token_file=volume.token_file, key_file=tmp_path / "k.json"))
    stamp = os.stat(volume.current / "token").st_mtime_ns
    volume.update("bbbb\n")
    os.utime(volume.current / "token", ns=(stamp, stamp))  # only the resolved path tells them apart
    store.reload_now()
    assert valid(store, MANAGEMENT, "bbbb") and not valid(store, MANAGEMENT, "aaaa")


@pytest.mark.parametrize("glitch", ["missing", "empty", "unreadable", "dangling ..data"])
def test_a_half_done_rotation_keeps_the_previous_tokens_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, glitch: str
) -> None:
    volume = SecretVolume(tmp_path / "secret", "kept-token\n")
    store = TokenStore(AuthSettings(inference_token_file=volume.token_file, key_file=tmp_path / "k.json"))
    target = volume.current / "token"
    if glitch == "missing":
        target.unlink()
    elif glitch == "empty":
        target.write_text("")
    elif glitch == "unreadable":
        target.write_bytes(b"\xff\xfe not utf-8")
    else:
        (volume.root / "..data_tmp").symlink_to("..gone")
        os.replace(volume.root / "..data_tmp", volume.root / "..data")
    with caplog.at_level(logging.WARNING, logger="modelfleet.server.rpc.auth"):
        store.reload_now()
        store.reload_now()  # a glitch that lasts is reported once, not on every poll
    assert valid(store, INFERENCE, "kept-token")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "inference" in warnings[0].getMessage()
    volume.update("next-token\n")
    store.reload_now()
    assert valid(store, INFERENCE, "next-token") and not valid(store, INFERENCE, "kept-token")


def test_tokens_never_appear_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "management"
    path.write_text("secret-one\n")
    with caplog.at_level(logging.DEBUG):
        store = TokenStore(AuthSettings(management_token_file=path, key_file=tmp_path / "k.json"))
        path.write_text("secret-two\n")
        store.reload_now()
    generated = json.loads((tmp_path / "k.json").read_text())[INFERENCE]["key"]
    assert caplog.records, "the reload should have been logged"
    for secret in ("secret-one", "secret-two", generated):
        assert secret not in caplog.text


async def test_the_reload_task_rotates_a_running_servers_tokens(tmp_path: Path, start_server, wait_until) -> None:
    volume = SecretVolume(tmp_path / "secret", "first\n")
    settings = AuthSettings(
        inference_token_file=volume.token_file, key_file=tmp_path / "k.json", reload_interval_s=0.05
    )
    store = TokenStore(settings)
    interceptor = TokenAuthInterceptor(store, {"test.Inference": INFERENCE}, set())
    _, port = await start_server(interceptors=[interceptor])
    store.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Inference/Unary")

            async def accepted(token: str) -> bool:
                try:
                    return await call(b"x", metadata=bearer(token), timeout=10) == b"x"
                except aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
                    return False

            assert await accepted("first") and not await accepted("second")
            volume.update("first\nsecond\n")
            await wait_until(lambda: accepted("second"), what="the new token to be accepted")
            assert await accepted("first")
            volume.update("second\n")

            async def first_refused() -> bool:
                return not await accepted("first")

            await wait_until(first_refused, what="the old token to be refused")
            assert await accepted("second")
    finally:
        await store.stop()
