"""The `privatelink` command: a small CLI for what `az` does not cover."""

from __future__ import annotations

import gc
import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from privatelink import __version__
from privatelink.cli.az import az_command
from privatelink.cli.site import site_group
from privatelink.cli.tenant import DATA_DIR_HELP, subscription_group, tenant_group
from privatelink.cli.user import user_group

if TYPE_CHECKING:
    from privatelink.server import Server

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
@click.option(
    "--dataplane",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Realize networks in the kernel (auto: when root on Linux with nft, ip, conntrack).",
)
@click.option("--netns-prefix", default=None, help="Prefix of the namespaces privatelink owns.")
@click.option(
    "--show-secret",
    is_flag=True,
    help="Also print the client secret (it is always in credentials.json).",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="On SIGTERM/SIGINT, seconds in-flight requests get to finish.",
)
@click.option(
    "--metrics-addr",
    default=None,
    metavar="HOST:PORT",
    help="Also serve Prometheus metrics over plain HTTP here (e.g. 127.0.0.1:9464).",
)
def serve(
    host: str,
    port: int,
    data_dir: Path | None,
    db_url: str | None,
    log_level: str,
    dataplane: str,
    netns_prefix: str | None,
    show_secret: bool,
    shutdown_timeout: float,
    metrics_addr: str | None,
) -> None:
    """Run the ARM-compatible HTTPS server (and the data plane).

    SIGTERM or SIGINT stops it gracefully: no new connections, in-flight requests get
    --shutdown-timeout seconds, then the data plane loop, probes and DNS server stop
    and the process exits 0. The kernel state stays (flows go on); a restart resumes.
    """
    import uvicorn

    from privatelink import malloc, serving

    malloc.limit_arenas()  # before any thread of the server starts
    from privatelink.server import build, dataplane_available, default_data_dir

    data_dir = (data_dir or default_data_dir()).resolve()
    if not _port_free(host, port):
        raise click.ClickException(f"{host}:{port} is already in use; pick another --port.")
    missing = dataplane_available()
    if dataplane == "on" and missing:
        raise click.ClickException(f"--dataplane on: {missing}")
    use_dataplane = dataplane == "on" or (dataplane == "auto" and missing is None)
    if metrics_addr:
        from privatelink.prometheus import parse_address

        try:
            metrics_host, metrics_port = parse_address(metrics_addr)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--metrics-addr") from exc
        if not _port_free(metrics_host, metrics_port):
            raise click.ClickException(f"--metrics-addr {metrics_addr} is already in use.")
    server = build(
        data_dir,
        host,
        port,
        db_url,
        dataplane=use_dataplane,
        netns_prefix=netns_prefix,
        metrics_addr=metrics_addr,
    )
    store = db_url or f"sqlite in {data_dir}"
    for line in banner(server, show_secret, store=store, dataplane_missing=missing):
        console.print(line, highlight=False, soft_wrap=True)
    config = uvicorn.Config(
        serving.HeadLimits(server.app),
        host=host,
        port=port,
        ssl_certfile=str(server.pki.cert_file),
        ssl_keyfile=str(server.pki.key_file),
        log_level=log_level,
        # h11 with ARM errors for bad request heads and bounded TLS closes (serving.py).
        http=serving.ArmH11Protocol,
    )
    # What exists now lives as long as the server: keep it out of every full garbage
    # collection, which otherwise walks it all, a pause that was most of the p99 latency.
    gc.collect()
    gc.freeze()
    trimmer = malloc.Trimmer().start()
    try:
        started = serving.serve(config, drain_timeout=shutdown_timeout)
    finally:
        trimmer.stop()
    if not started:
        raise SystemExit(3)  # uvicorn's exit status for a failed start


def banner(
    server: Server,
    show_secret: bool,
    *,
    store: str = "",
    dataplane_missing: str | None = None,
) -> list[str]:
    """What `serve` prints at start (rich markup), one line each.

    The client secret is printed only when asked for: stdout ends up in logs and
    terminals' scrollback; credentials.json (mode 600) is where clients read it.
    """
    lines = [
        f"[bold]privatelink[/] {__version__} listening on [cyan]{server.url}[/]",
        f"  CA file:      {server.pki.ca_file}",
        f"  tenant id:    {server.client.tenant_id}",
        f"  client id:    {server.client.client_id}",
    ]
    if show_secret:
        lines.append(f"  client secret: {server.client.client_secret}")
    lines.append(f"  credentials:  {server.credentials_file} (holds the client secret)")
    if store:
        lines.append(f"  store:        {store}")
    if server.metrics_addr:
        lines.append(f"  Prometheus:   http://{server.metrics_addr}/metrics")
    if server.reconciler is not None:
        lines.append(f"  data plane:   on (namespaces {server.reconciler.prefix}-*)")
        if server.dns is not None:
            lines.append(f"  private DNS:  {server.dns.address}:{server.dns.port} in every VNet")
    else:
        why = f" ({dataplane_missing})" if dataplane_missing else ""
        lines.append(f"  data plane:   off{why}")
    return lines


def _data_dir(value: Path | None) -> Path:
    from privatelink.server import default_data_dir

    return (value or default_data_dir()).resolve()


def _find_nic(index: dict[str, Any], wanted: str) -> dict[str, Any]:
    """A NIC of the data plane index by id (case-insensitive) or unique name."""
    nics: dict[str, dict[str, Any]] = index.get("nics", {})
    if wanted.lower() in nics:
        return nics[wanted.lower()]
    by_name = [n for n in nics.values() if n["id"].rsplit("/", 1)[-1].lower() == wanted.lower()]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        ids = "\n  ".join(n["id"] for n in by_name)
        raise click.ClickException(f"several NICs are named {wanted}; give the id:\n  {ids}")
    raise click.ClickException(
        f"no realized NIC {wanted!r}; create it through the API and check `privatelink serve` "
        "runs with the data plane on"
    )


@main.command(
    name="exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@click.option("--nic", default=None, help="NIC resource id or name: run inside that VM.")
@click.option("--site", default=None, help="On-premises site name: run on a host of it (--ip).")
@click.option("--ip", default=None, help="With --site: the host's address in the site's space.")
@click.option(
    "--internet",
    is_flag=True,
    help="Run in the internet namespace (it reaches public IPs; never the host's network).",
)
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=DATA_DIR_HELP
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(
    nic: str | None,
    site: str | None,
    ip: str | None,
    internet: bool,
    data_dir: Path | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND inside a NIC's network namespace (its "VM"), on a host of an
    on-premises site, or in the internet namespace."""
    from privatelink.dataplane import privileged

    if sum((nic is not None, site is not None, internet)) != 1:
        raise click.UsageError("give exactly one of --nic, --site (with --ip) and --internet")
    if (site is None) != (ip is None):
        raise click.UsageError("--site and --ip go together")
    index_file = _data_dir(data_dir) / "dataplane.json"
    if not index_file.exists():
        raise click.ClickException(f"{index_file} not found: is the data plane running?")
    index = json.loads(index_file.read_text())
    try:
        if nic is not None:
            netns = _find_nic(index, nic)["netns"]
        elif internet:
            netns = index.get("internet") or ""
            if not netns:
                raise click.ClickException(
                    "there is no internet namespace yet: it exists while something is public "
                    "(a public load balancer frontend, a VPN gateway or a site)"
                )
        else:
            assert site is not None and ip is not None
            netns = _site_host(index, site, ip)
        privileged.exec_in_netns(netns, list(command))
    except privileged.KernelError as exc:
        raise click.ClickException(exc.message) from exc


def _site_host(index: dict[str, Any], site: str, ip: str) -> str:
    """The namespace of a site's host at `ip`, made (or checked) first."""
    from ipaddress import IPv4Address, IPv4Network

    from privatelink.dataplane import names, privileged

    found = index.get("sites", {}).get(site.lower())
    if found is None:
        raise click.ClickException(
            f"no realized site {site!r}: create it with `privatelink site create` and check "
            "`privatelink serve` runs with the data plane on"
        )
    try:
        address = IPv4Address(ip)
    except ValueError as exc:
        raise click.BadParameter(f"{ip!r} is not an IPv4 address", param_hint="--ip") from exc
    spaces = [IPv4Network(p) for p in found["address_space"]]
    if not any(
        address in net and address not in (net.network_address, net.broadcast_address)
        for net in spaces
    ):
        raise click.BadParameter(
            f"{ip} is not a host address of site {found['name']}'s space "
            f"({', '.join(found['address_space'])})",
            param_hint="--ip",
        )
    host = names.host_netns(index["prefix"], found["name"], str(address))
    privileged.ensure_site_host(
        found["netns"], host, str(address), names.site_host_ifname(str(address)), names.GATEWAY
    )
    return host


@main.command()
@click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=DATA_DIR_HELP
)
@click.option("--netns-prefix", default=None, help="Prefix to sweep (default: the server's).")
def cleanup(data_dir: Path | None, netns_prefix: str | None) -> None:
    """Remove every namespace, link and nft table privatelink owns."""
    from privatelink.dataplane.reconciler import cleanup as sweep
    from privatelink.server import ServerConfig

    prefix = netns_prefix or ServerConfig.load(_data_dir(data_dir)).netns_prefix
    removed = sweep(prefix)
    console.print(f"removed {len(removed)} namespace(s) with prefix {prefix!r}")
    for netns in removed:
        console.print(f"  {netns}")


main.add_command(az_command)
main.add_command(tenant_group)
main.add_command(subscription_group)
main.add_command(site_group)
main.add_command(user_group)


if __name__ == "__main__":
    main()
