"""DatabaseEndpoint URLs: the upstream JDBC form translated to SQLAlchemy URLs.

``jdbc:mysql://host:3306/db?useSSL=false`` (also ``jdbc:mariadb://``) becomes
``mysql+pymysql://user:password@host:3306/db``; ``jdbc:postgresql://host:5432/db`` becomes
``postgresql+psycopg2://…``. The async engine uses ``aiomysql`` / ``asyncpg`` instead. A URL
that already names a SQLAlchemy dialect (``mysql+pymysql://…``) is taken as it is.

JDBC properties with a driver equivalent are translated (see ``_MYSQL_PARAMS`` and
``_POSTGRES_PARAMS``); the others only tune the Java driver and are dropped (TLS included: give
the driver's TLS settings in ``connect_args``). Multi-host JDBC URLs (``jdbc:mysql://h1,h2/db``)
are refused: list each host as its own DatabaseEndpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlalchemy.engine import URL, make_url

from opensergo.database.errors import ConfigurationError

Family = Literal["mysql", "postgresql"]

SYNC_DRIVERS: dict[Family, str] = {"mysql": "pymysql", "postgresql": "psycopg2"}
ASYNC_DRIVERS: dict[Family, str] = {"mysql": "aiomysql", "postgresql": "asyncpg"}
_DEFAULT_PORTS: dict[Family, int] = {"mysql": 3306, "postgresql": 5432}
_SCHEMES: dict[str, Family] = {"mysql": "mysql", "mariadb": "mysql", "postgresql": "postgresql"}


def _ms_to_s(value: str) -> str:
    return str(max(1, round(int(value) / 1000)))


def _mysql_charset(value: str) -> str:
    lowered = value.lower().replace("-", "")
    return "utf8mb4" if lowered in ("utf8", "utf8mb4") else lowered


# JDBC property -> (driver query parameter, value translation; None drops the parameter)
_MYSQL_PARAMS: dict[str, tuple[str, Callable[[str], str | None]]] = {
    "characterEncoding": ("charset", _mysql_charset),
    "connectTimeout": ("connect_timeout", _ms_to_s),
    "socketTimeout": ("read_timeout", _ms_to_s),
}
_POSTGRES_PARAMS: dict[str, tuple[str, Callable[[str], str | None]]] = {
    "sslmode": ("sslmode", str),
    "ApplicationName": ("application_name", str),
    "applicationName": ("application_name", str),
    "connectTimeout": ("connect_timeout", str),  # seconds in the PostgreSQL JDBC driver too
    "currentSchema": ("options", lambda v: f"-csearch_path={v}"),
}


@dataclass(frozen=True, slots=True)
class EndpointURL:
    """A translated endpoint URL: its database family and the SQLAlchemy URL (with credentials)."""

    family: Family
    url: URL

    def redacted(self) -> str:
        """The URL for logs and errors: never the password."""
        return self.url.render_as_string(hide_password=True)


def family_of(url: str) -> Family:
    """``mysql`` or ``postgresql`` for a JDBC or SQLAlchemy URL."""
    text = url[5:] if url.startswith("jdbc:") else url
    scheme = text.split(":", 1)[0].split("+", 1)[0].lower()
    family = _SCHEMES.get(scheme)
    if family is None:
        raise ConfigurationError(f"unsupported database URL scheme {scheme!r} (mysql, mariadb, postgresql)")
    return family


def translate(  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    asynchronous: bool = False,
    driver: str | None = None,
) -> EndpointURL:
    """Translate a DatabaseEndpoint URL to a SQLAlchemy URL with the given credentials.

    ``driver`` overrides the default driver of the family (e.g. ``mysqldb``).
    """
    family = family_of(url)
    chosen = driver or (ASYNC_DRIVERS if asynchronous else SYNC_DRIVERS)[family]
    if not url.startswith("jdbc:"):
        parsed = make_url(url)
        if "+" not in parsed.drivername:
            parsed = parsed.set(drivername=f"{family}+{chosen}")
        if username is not None and parsed.username is None:
            parsed = parsed.set(username=username)
        if password is not None and parsed.password is None:
            parsed = parsed.set(password=password)
        return EndpointURL(family, parsed)

    parts = urlsplit(url[5:])
    netloc = parts.netloc
    if "@" in netloc:  # jdbc:mysql://user:pw@host/db is accepted by Connector/J
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, pw = userinfo.partition(":")
        username = username if username is not None else unquote(user) or None
        password = password if password is not None else (unquote(pw) if pw else None)
    if "," in netloc:
        raise ConfigurationError(
            f"multi-host JDBC URLs are not supported ({netloc!r}): declare one DatabaseEndpoint per host"
        )
    host, port = _host_port(netloc, family)
    database = unquote(parts.path.lstrip("/")) or None
    table = _MYSQL_PARAMS if family == "mysql" else _POSTGRES_PARAMS
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "user" and username is None:
            username = value
        elif key == "password" and password is None:
            password = value
        elif key in table:
            name, convert = table[key]
            converted = convert(value)
            if converted is not None:
                query[name] = converted
    if family == "mysql" and "charset" not in query:
        query["charset"] = "utf8mb4"
    if asynchronous and family == "mysql":
        query.pop("read_timeout", None)  # not an aiomysql argument
    if asynchronous and family == "postgresql":
        query.pop("connect_timeout", None)
        query.pop("application_name", None)
        query.pop("options", None)
    built = URL.create(
        f"{family}+{chosen}",
        username=username,
        password=password,
        host=host,
        port=port,
        database=database,
        query=query,
    )
    return EndpointURL(family, built)


def _host_port(netloc: str, family: Family) -> tuple[str, int]:
    if netloc.startswith("["):  # [::1]:3306
        host, _, rest = netloc[1:].partition("]")
        port_text = rest.lstrip(":")
    else:
        host, _, port_text = netloc.partition(":")
    if not host:
        raise ConfigurationError("the JDBC URL has no host")
    try:
        port = int(port_text) if port_text else _DEFAULT_PORTS[family]
    except ValueError:
        raise ConfigurationError(f"invalid port {port_text!r} in the JDBC URL") from None
    return host, port
