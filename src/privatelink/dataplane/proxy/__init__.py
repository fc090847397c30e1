"""The user-space path of services with `enableProxyProtocol` (issue 14): the PROXY v2
header codec (`header`); the proxy itself comes with the rest of the issue."""
