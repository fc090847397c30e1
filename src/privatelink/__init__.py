"""privatelink: a self-hosted, working implementation of Azure Private Link Service."""

__version__ = "0.1.0"
