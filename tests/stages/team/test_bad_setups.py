"""Bad set-ups of the team's stack, each one `error:` line before any work, in seconds, nothing written: a wrong
database password, a database down or missing, a tracking server unreachable, its bucket missing or its S3
credentials refused, a study storage with a wrong password."""

from __future__ import annotations

import time

import pytest
from conftest import BUCKET, SUPERUSER, tiny_project
from helpers import BIN, assert_one_line_error, free_port, new_store, run, start, stop, wait_until_answers


@pytest.fixture(scope="module")
def broken_servers(s3, tmp_path_factory, mlflow_template):
    """Two tracking servers whose artifact store fails: (bucket missing, credentials refused) URLs."""
    root = tmp_path_factory.mktemp("broken")
    settings = {"missing": ("s3://no-such-bucket/mlartifacts", s3.env),
                "refused": (f"s3://{BUCKET}/mlartifacts", {**s3.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"})}
    servers, urls = [], {}
    for name, (destination, env) in settings.items():
        folder, port = root / name, free_port()
        folder.mkdir()
        servers.append((start([str(BIN / "mlflow"), "server", "--backend-store-uri", new_store(folder, mlflow_template),
                               "--artifacts-destination", destination, "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], folder / "server.log", cwd=folder,
                              MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **env), folder / "server.log"))
        urls[name] = f"http://127.0.0.1:{port}"
    try:
        for (server, log), url in zip(servers, urls.values()):
            wait_until_answers(f"{url}/health", server, log)
        yield urls
    finally:
        for server, _ in servers:
            stop(server)


def bad_train(prepared_data, tmp_path, monkeypatch, uri, *needles):
    root = tiny_project(tmp_path / "machine")
    (root / "data").symlink_to(prepared_data)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    began = time.monotonic()
    code, output = run("train")
    print("\n" + output.strip().splitlines()[-1])  # for the record
    assert_one_line_error(code, output, *needles)
    assert time.monotonic() - began < 20 and not (root / "results").exists() and not (root / "mlflow-pending").exists()


def test_a_wrong_database_password_is_one_line(prepared, postgres, tmp_path, monkeypatch):
    bad_train(prepared, tmp_path, monkeypatch, postgres.url("postgres", "postgres", "wrong"),
              "MLflow tracking store (MLFLOW_TRACKING_URI) postgresql://postgres:***@127.0.0.1",
              "refused user 'postgres' (wrong password): fix the user and password in the URL")


def test_a_database_that_is_down_is_one_line(prepared, tmp_path, monkeypatch):
    port = free_port()
    bad_train(prepared, tmp_path, monkeypatch, f"postgresql://mlflow:secret@127.0.0.1:{port}/mlflow",
              f"the database server at 127.0.0.1:{port} does not answer (connection refused): start the database "
              "there, or fix the host and port in the URL")


def test_a_missing_database_is_one_line(prepared, postgres, tmp_path, monkeypatch):
    bad_train(prepared, tmp_path, monkeypatch, postgres.url("nodb", *SUPERUSER),
              "has no database 'nodb': create it (`createdb --owner postgres nodb`)")


def test_an_unreachable_server_is_one_line(prepared, tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    bad_train(prepared, tmp_path, monkeypatch, url, f"the MLflow server at {url} does not answer (connection refused): "
                                                    "start it, or set MLFLOW_TRACKING_URI to its address")


def test_a_missing_bucket_is_one_line(prepared, broken_servers, tmp_path, monkeypatch):
    url = broken_servers["missing"]
    bad_train(prepared, tmp_path, monkeypatch, url, f"the MLflow server at {url} cannot use its artifact store "
                                          "s3://no-such-bucket/mlartifacts (The specified bucket does not exist): "
                                          "create the bucket, or fix the server's --artifacts-destination")


def test_refused_s3_credentials_are_one_line(prepared, broken_servers, tmp_path, monkeypatch):
    url = broken_servers["refused"]
    bad_train(prepared, tmp_path, monkeypatch, url, f"the MLflow server at {url} cannot use its artifact store "
                                          f"s3://{BUCKET}/mlartifacts (The request signature we calculated",
              "fix the credentials the server runs with (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


def test_a_study_storage_with_a_wrong_password_is_one_line(postgres, tmp_path, monkeypatch):
    tiny_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, output = run("search", "--study", "s", "--storage", postgres.url("postgres", "postgres", "wrong"),
                       "--trials", "1", "--no-promote")
    print("\n" + output.strip().splitlines()[-1])
    assert_one_line_error(code, output, "--storage postgresql://postgres:***@127.0.0.1",
                          "refused user 'postgres' (wrong password)")
    assert not (tmp_path / "optuna.db").exists()


