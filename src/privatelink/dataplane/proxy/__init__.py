"""The user-space path of services with `enableProxyProtocol`: the PROXY v2 header codec
(`header`), the relay's view of a plan (`config`) and the relay itself (`relay`)."""
