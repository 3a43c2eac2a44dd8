"""A database that MLflow's store or Optuna's storage names by URL (postgresql://…, mysql://…): the URL as messages
show it (no password), and one connection tried before either library uses it, its failure one line that says what
to fix. MLflow's SQLAlchemy store retries a connection for about 100 s; this check answers in at most CONNECT_S."""

from __future__ import annotations

import re

from csra.errors import CSRAError, first_line

CONNECT_S = 10  # s a connection may take before the database counts as not answering
SERVERS = ("postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")  # SQLAlchemy dialects of a database server
TEAM_EXTRA = "pip install -c constraints.txt -e '.[team]'"


def shown(url: str) -> str:
    """A URL without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def is_server_database(url: str) -> bool:
    """Whether url names a database server that SQLAlchemy connects to (postgresql://, mysql+pymysql://, …)."""
    return "://" in url and url.split("://", 1)[0].split("+")[0] in SERVERS


def check_database(url: str, what: str) -> None:
    """Connect once to the database at url (what: where the URL was given, for the message); nothing else."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args=_timeout(url), poolclass=sqlalchemy.pool.NullPool)
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as e:
        raise CSRAError(f"{what} {shown(url)}: no driver for it is installed ({first_line(e)}): {TEAM_EXTRA} "
                        "installs the PostgreSQL one") from None
    except sqlalchemy.exc.ArgumentError as e:
        raise CSRAError(f"{what} {shown(url)}: not a database URL ({first_line(e)})") from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.DBAPIError as e:
        raise CSRAError(database_problem(url, what, e)) from None
    finally:
        engine.dispose()


def _timeout(url: str) -> dict:
    return {"connect_timeout": CONNECT_S} if url.startswith(("postgresql", "postgres", "mysql", "mariadb")) else {}


def database_problem(url: str, what: str, error: BaseException) -> str:
    """The one line for a database that refused or did not answer: which server, and what to fix."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    server = f"the database server at {parsed.host or 'localhost'}:{parsed.port or 'its default port'}"
    text = str(getattr(error, "orig", None) or error)
    head = f"{what} {shown(url)}"
    if "password authentication failed" in text or "Access denied for user" in text:
        return (f"{head}: {server} refused user '{parsed.username}' (wrong password): fix the user and password in "
                "the URL")
    if re.search(r'database "[^"]+" does not exist|Unknown database', text):
        return (f"{head}: {server} has no database '{parsed.database}': create it (`createdb --owner "
                f"{parsed.username} {parsed.database}`) or fix the database name in the URL")
    if re.search(r"role \"[^\"]+\" does not exist", text):
        return f"{head}: {server} has no user '{parsed.username}': create it (`createuser`) or fix the user in the URL"
    refused = re.search(r"Connection refused|could not connect|timeout expired|Can't connect|No route to host"
                        r"|Name or service not known|could not translate host name", text)
    if refused:
        return (f"{head}: {server} does not answer ({refused.group(0).lower()}): start the database there, or fix "
                "the host and port in the URL")
    return f"{head}: {first_line(error)}"
