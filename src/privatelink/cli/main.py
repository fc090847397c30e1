"""The `privatelink` command: a small CLI for what `az` does not cover."""

from __future__ import annotations

import socket
from pathlib import Path

import click
from rich.console import Console

from privatelink import __version__

console = Console()


@click.group()
@click.version_option(__version__, prog_name="privatelink")
def main() -> None:
    """privatelink: a self-hosted Azure Private Link Service."""


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8443, show_default=True, type=int, help="HTTPS port.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory (default $PRIVATELINK_DATA_DIR or ~/.privatelink).",
)
@click.option("--db-url", default=None, help="SQLAlchemy URL (default: SQLite in the data dir).")
@click.option("--log-level", default="warning", show_default=True, help="uvicorn log level.")
def serve(host: str, port: int, data_dir: Path | None, db_url: str | None, log_level: str) -> None:
    """Run the ARM-compatible HTTPS server."""
    import uvicorn

    from privatelink.server import build, default_data_dir

    data_dir = (data_dir or default_data_dir()).resolve()
    if not _port_free(host, port):
        raise click.ClickException(f"{host}:{port} is already in use; pick another --port.")
    server = build(data_dir, host, port, db_url)
    console.print(f"[bold]privatelink[/] {__version__} listening on [cyan]{server.url}[/]")
    console.print(f"  CA file:      {server.pki.ca_file}")
    console.print(f"  tenant id:    {server.client.tenant_id}")
    console.print(f"  client id:    {server.client.client_id}")
    console.print(f"  client secret:{' '}{server.client.client_secret}")
    console.print(f"  credentials:  {server.credentials_file}")
    console.print(f"  store:        {db_url or 'sqlite in ' + str(data_dir)}", highlight=False)
    uvicorn.run(
        server.app,
        host=host,
        port=port,
        ssl_certfile=str(server.pki.cert_file),
        ssl_keyfile=str(server.pki.key_file),
        log_level=log_level,
        # Idle TLS keep-alive clients would otherwise hold shutdown for ~30 s.
        timeout_graceful_shutdown=3,
    )


if __name__ == "__main__":
    main()
