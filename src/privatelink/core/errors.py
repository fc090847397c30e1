"""Typed domain errors, one class per ARM wire error code.

Each error carries the ARM `code` a user can search for and the HTTP status; the API
edge renders every one of them the same way: `{"error": {"code", "message"}}`.
Messages are built from a per-class template so raise sites stay short:
`raise SubnetIsFull(subnet=subnet_id)`.
"""

from __future__ import annotations

from typing import Any, ClassVar

# A rejected value echoed back in a message is cut to this many characters (then "...").
MAX_ECHO = 200
# Any other field (resource ids, reasons): longer than any valid id, still bounded.
MAX_FIELD = 1024


def clip(value: str, limit: int = MAX_ECHO) -> str:
    """A user value as echoed in an error message: at most `limit` characters, then '...'."""
    return value if len(value) <= limit else value[:limit] + "..."


class ArmError(Exception):
    """Base of every error that reaches a client as an ARM error body."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "BadRequest"
    template: ClassVar[str] = "{message}"
    # How much of each string field the message shows (fields may be user input).
    echo_limit: ClassVar[int] = MAX_FIELD

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        self.fields = fields
        if message is None:
            limit = self.echo_limit
            shown = {k: clip(v, limit) if isinstance(v, str) else v for k, v in fields.items()}
            message = self.template.format(**shown)
        self.message = message
        super().__init__(message)


class BadRequest(ArmError):
    """A 400: the request breaks a rule; nothing was written."""


class NotFound(ArmError):
    status = 404
    code = "ResourceNotFound"
    template = "The resource '{id}' was not found."


class Conflict(ArmError):
    status = 409
    code = "Conflict"


# --- generic request errors -------------------------------------------------------------


class InvalidRequestContent(BadRequest):
    code = "InvalidRequestContent"


class InvalidResourceId(BadRequest):
    code = "LinkedInvalidPropertyId"

    def __init__(self, value: str, expected: str | None = None) -> None:
        want = f" of type {expected}" if expected else ""
        shown = clip(value, MAX_FIELD)
        super().__init__(
            f"Property id '{shown}' is not a valid Microsoft.Network resource id{want}."
        )


class InvalidResourceName(BadRequest):
    code = "InvalidResourceName"
    echo_limit = MAX_ECHO
    template = (
        "Resource name '{name}' is invalid: use 1-80 letters, digits, '_', '.' or '-', "
        "starting with a letter, digit or '_' and not ending with '.' or '-'."
    )


class InvalidResourceGroupName(BadRequest):
    code = "InvalidResourceGroupName"
    echo_limit = MAX_ECHO
    template = "Resource group name '{name}' is invalid."


class InvalidSubscriptionId(BadRequest):
    code = "InvalidSubscriptionId"
    echo_limit = MAX_ECHO
    template = "The provided subscription identifier '{value}' is malformed or invalid."


class LocationRequired(BadRequest):
    code = "LocationRequired"
    template = "The location property is required for this definition."


class InvalidLocation(BadRequest):
    code = "LocationNotAvailableForResourceType"
    echo_limit = MAX_ECHO
    template = "'{value}' is not a valid region name (letters and digits, e.g. 'eastus')."


class InvalidResourceReference(BadRequest):
    code = "InvalidResourceReference"
    template = "Resource {ref} referenced by resource {id} was not found."


class DuplicateResourceName(BadRequest):
    code = "DuplicateResourceName"
    template = "Resource {id} has two child resources with the same name '{name}'."


class UnsupportedProperty(BadRequest):
    code = "UnsupportedProperty"
    template = "Property '{name}' is not supported by privatelink: {why}"


class ResourceNotFound(NotFound):
    code = "ResourceNotFound"


class ParentResourceNotFound(NotFound):
    code = "ParentResourceNotFound"
    template = "Parent resource '{id}' of the requested resource was not found."


class AnotherOperationInProgress(Conflict):
    code = "AnotherOperationInProgress"
    template = "Another operation on resource {id} is in progress; retry when it has finished."


class PreconditionFailed(ArmError):
    status = 412
    code = "PreconditionFailed"
    template = "{message}"


class LimitExceeded(BadRequest):
    code = "LimitExceeded"


class ResourceLocationMismatch(BadRequest):
    code = "ResourceLocationMismatch"
    template = "Resource {id} in location '{location}' cannot use {ref} in location '{other}'."


# --- addressing ---------------------------------------------------------------------------


class InvalidAddressPrefix(BadRequest):
    code = "InvalidAddressPrefixFormat"
    template = "Address prefix '{prefix}' of resource {id} is not a valid IPv4 CIDR prefix."


class IPv6NotSupported(BadRequest):
    code = "IPv6NotSupported"
    template = "{what} uses IPv6; privatelink supports IPv4 only, like private link service."


class SubnetOutsideAddressSpace(BadRequest):
    code = "NetcfgSubnetRangeOutsideVnet"
    template = "Subnet '{subnet}' prefix {prefix} is not within the address space of {id}."


class SubnetRangesOverlap(BadRequest):
    code = "NetcfgSubnetRangesOverlap"
    template = "Subnet '{subnet}' prefix {prefix} overlaps subnet '{other}' of {id}."


class AddressSpacesOverlap(BadRequest):
    code = "VnetAddressSpacesOverlap"
    template = "Address prefixes {prefix} and {other} of {id} overlap."


class SubnetTooSmall(BadRequest):
    code = "SubnetTooSmall"
    template = "Subnet prefix {prefix} is too small: Azure subnets are /29 or larger."


class SubnetsPerVirtualNetworkLimitReached(LimitExceeded):
    code = "SubnetsPerVirtualNetworkLimitReached"
    template = "Virtual network {id} would have {count} subnets; at most {limit} are allowed."


class AddressPrefixesPerVirtualNetworkLimitReached(LimitExceeded):
    code = "AddressPrefixesPerVirtualNetworkLimitReached"
    template = "Virtual network {id} lists {count} address prefixes; at most {limit} are allowed."


class InUseSubnetCannotBeDeleted(BadRequest):
    code = "InUseSubnetCannotBeDeleted"
    template = "Subnet {id} is in use by {user} and cannot be deleted."


class InUseSubnetCannotBeUpdated(BadRequest):
    code = "InUseSubnetCannotBeUpdated"
    template = "Subnet {id} is in use by {user}; its address prefix cannot change."


# --- virtual network peering (codes as Azure's network resource provider returns them; the
# ones marked "ours" have no published Azure code) ----------------------------------------


class PeeredAddressSpacesOverlap(BadRequest):
    code = "VnetAddressSpacesOverlap"
    template = (
        "Cannot create or update peering {id}. Virtual networks {vnet} and {remote} cannot be "
        "peered because their address spaces overlap. Overlapping address prefixes: {prefixes}."
    )


class VnetAddressSpaceOverlapsWithAlreadyPeeredVnet(BadRequest):
    code = "VnetAddressSpaceOverlapsWithAlreadyPeeredVnet"
    template = (
        "Cannot create or update peering {id}. Virtual networks {vnet} and {remote} cannot be "
        "peered because address space of the first virtual network overlaps with address "
        "space of virtual network {third} already peered with the second virtual network. "
        "Overlapping address prefixes: {prefixes}."
    )


class PeeredVnetAddressSpaceOverlap(BadRequest):
    code = "VnetAddressSpacesOverlap"
    template = (
        "Address space {prefixes} of virtual network {id} overlaps with the address space of "
        "peered virtual network {remote}. Peered virtual networks cannot overlap."
    )


class RemotePeeringIsDisconnected(BadRequest):
    code = "RemotePeeringIsDisconnected"
    template = (
        "Cannot create or update peering {id} because remote peering {remote} referencing "
        "parent virtual network is in Disconnected state. Update or re-create the remote "
        "peering to get it back to Initiated state."
    )


class AnotherPeeringAlreadyReferencesRemoteVnet(BadRequest):
    code = "AnotherPeeringAlreadyReferencesRemoteVnet"
    template = (
        "Peering {other} already references remote virtual network {remote}. Cannot add "
        "another peering {id} referencing the same remote virtual network."
    )


class CannotPeerVnetWithItself(BadRequest):
    code = "CannotPeerVnetWithItself"  # ours
    template = (
        "Peering {id} cannot reference its own virtual network: a virtual network cannot be "
        "peered with itself."
    )


class PeeringRemoteVnetCannotChange(BadRequest):
    code = "PeeringRemoteVnetCannotChange"  # ours
    template = (
        "Peering {id} references {old}; its remoteVirtualNetwork cannot change to {new}. "
        "Delete the peering and create a new one."
    )


class RemoteVnetHasNoGateways(BadRequest):
    code = "RemoteVnetHasNoGateways"
    template = (
        "Peering {id} cannot have UseRemoteGateway flag set to true because remote virtual "
        "network {remote} referenced by the peering does not have any gateways."
    )


class RemotePeeringDoesNotAllowGatewayTransit(BadRequest):
    code = "RemotePeeringDoesNotAllowGatewayTransit"  # ours; Azure's message
    template = (
        "Peering {id} cannot have UseRemoteGateways flag set to true, because corresponding "
        "remote peering {remote} has AllowGatewayTransit flag set to false or does not exist."
    )


class VnetWithGatewayCannotUseRemoteGateways(BadRequest):
    code = "VnetWithGatewayCannotUseRemoteGateways"  # ours
    template = (
        "Peering {id} cannot have UseRemoteGateways flag set to true because its virtual "
        "network {vnet} already has a gateway ({gateway})."
    )


class OnlyOnePeeringCanUseRemoteGateways(BadRequest):
    code = "OnlyOnePeeringCanUseRemoteGateways"  # ours
    template = (
        "Peering {id} cannot have UseRemoteGateways flag set to true because peering {other} "
        "of the same virtual network already has it: only one peering can."
    )


class PeeringsPerVirtualNetworkLimitReached(BadRequest):
    code = "PeeringsPerVirtualNetworkLimitReached"
    template = "Virtual network {id} cannot have more than {limit} peerings."


class InvalidPrivateIPAddress(BadRequest):
    code = "PrivateIPAddressInvalid"
    template = "Private IP address '{ip}' is not a valid IPv4 address."


class PrivateIPAddressNotInSubnet(BadRequest):
    code = "PrivateIPAddressNotInSubnet"
    template = "Private static IP address {ip} does not belong to the range of subnet {subnet}."


class PrivateIPAddressInReservedRange(BadRequest):
    code = "PrivateIPAddressInReservedRange"
    template = (
        "Private static IP address {ip} falls within the reserved range of subnet {subnet} "
        "(the first four addresses and the last one)."
    )


class PrivateIPAddressIsAllocated(BadRequest):
    code = "PrivateIPAddressIsAllocated"
    template = "IP address {ip} of subnet {subnet} is already allocated to {owner}."


class PrivateIPAddressRequired(BadRequest):
    code = "PrivateIPAddressRequired"
    template = "{id}: privateIPAllocationMethod Static needs a privateIPAddress."


class SubnetIsFull(BadRequest):
    code = "SubnetIsFull"
    template = "Subnet {subnet} has no free address left."


# --- load balancer --------------------------------------------------------------------------


class InvalidLoadBalancerSku(BadRequest):
    code = "InvalidLoadBalancerSku"
    template = "Load balancer sku '{sku}' is not supported; use Basic or Standard."


class InvalidLoadBalancerRule(BadRequest):
    code = "InvalidLoadBalancerRule"


class InvalidProbe(BadRequest):
    code = "InvalidProbeConfiguration"


class LoadBalancerRuleFrontendPortConflict(BadRequest):
    code = "LoadBalancingRuleFrontendPortConflict"
    template = (
        "Load balancing rules {rule} and {other} use the same frontend IP configuration, "
        "protocol and frontend port {port}."
    )


class FrontendIPConfigurationInUse(BadRequest):
    code = "InUseFrontendIPConfigurationCannotBeDeleted"
    template = "Frontend IP configuration {id} is used by {user} and cannot be removed."


class BackendAddressPoolInUse(BadRequest):
    code = "InUseBackendAddressPoolCannotBeDeleted"
    template = "Backend address pool {id} is used by {user} and cannot be removed."


class LoadBalancerInUseByPrivateLinkService(Conflict):
    code = "LoadBalancerInUseByPrivateLinkService"
    template = "Load balancer {id} serves private link service {pls}; delete that service first."


class BackendPoolVirtualNetworkMismatch(BadRequest):
    code = "BackendPoolVirtualNetworkMismatch"
    template = "{id} is in another virtual network than backend address pool {pool}."


# --- private link service --------------------------------------------------------------------


class PrivateLinkServiceFrontendRequired(BadRequest):
    code = "PrivateLinkServiceFrontendIpConfigurationRequired"
    template = (
        "Private link service {id} needs at least one loadBalancerFrontendIpConfiguration "
        "(or, for Direct Connect, a destinationIPAddress)."
    )


class PrivateLinkServiceRequiresStandardLoadBalancer(BadRequest):
    code = "PrivateLinkServiceNotSupportedOnBasicLoadBalancer"
    template = (
        "Private link service {id} cannot use load balancer {lb} of sku '{sku}': "
        "private link service is only supported on Standard Load Balancer."
    )


class PrivateLinkServiceFrontendsOnMultipleLoadBalancers(BadRequest):
    code = "PrivateLinkServiceFrontendsOnMultipleLoadBalancers"
    template = (
        "Private link service {id} references frontends of more than one load balancer; "
        "a private link service is tied to a single load balancer."
    )


class FrontendInUseByAnotherPrivateLinkService(BadRequest):
    code = "FrontendIpConfigurationInUseByAnotherPrivateLinkService"
    template = "Frontend IP configuration {frontend} already serves private link service {other}."


class PrivateLinkServicesPerLoadBalancerLimitReached(LimitExceeded):
    code = "PrivateLinkServicesPerLoadBalancerLimitReached"
    template = "Load balancer {lb} already serves {limit} private link services (the limit)."


class PrivateLinkServicesPerSubscriptionLimitReached(LimitExceeded):
    code = "PrivateLinkServicesPerSubscriptionLimitReached"
    template = "Subscription {subscription} already has {limit} private link services (the limit)."


class BackendPoolSharedByPrivateLinkServices(BadRequest):
    code = "BackendPoolSharedByPrivateLinkServices"
    template = (
        "Backend address pool {pool} is reachable from private link services {id} and {other}; "
        "each private link service needs a dedicated backend pool."
    )


class PrivateLinkServiceRequiresTcpRules(BadRequest):
    code = "PrivateLinkServiceOnlySupportsTcp"
    template = (
        "Load balancing rule {rule} on frontend {frontend} uses protocol '{protocol}'; "
        "private link service supports TCP only."
    )


class PrivateLinkServiceIPv6NotSupported(BadRequest):
    code = "PrivateLinkServiceIPv6NotSupported"
    template = "{what} of private link service {id} is IPv6; private link service is IPv4 only."


class PrivateLinkServiceLocationMismatch(BadRequest):
    code = "PrivateLinkServiceLocationMismatch"
    template = (
        "Private link service {id} in '{location}' must be in the same region as {ref} ('{other}')."
    )


class NatIpConfigurationCount(BadRequest):
    code = "PrivateLinkServiceNatIpConfigurationCountInvalid"
    template = "Private link service {id} has {count} NAT ipConfigurations; 1 to {limit} allowed."


class NatIpConfigurationPrimary(BadRequest):
    code = "PrivateLinkServiceNatIpConfigurationPrimaryInvalid"
    template = "Private link service {id} must have exactly one primary NAT ipConfiguration."


class NatIpConfigurationCannotBeRemoved(BadRequest):
    code = "PrivateLinkServiceNatIpConfigurationCannotBeRemoved"
    template = (
        "NAT ipConfiguration '{name}' of private link service {id} cannot be removed or "
        "moved once added (active connections depend on it)."
    )


class NatSubnetNotInLoadBalancerVirtualNetwork(BadRequest):
    code = "PrivateLinkServiceNatSubnetNotInLoadBalancerVnet"
    template = (
        "NAT ipConfiguration '{name}' uses subnet {subnet}, which is not in virtual network "
        "{vnet} of the load balancer's frontend."
    )


class PrivateLinkServiceNetworkPoliciesEnabled(BadRequest):
    code = "PrivateLinkServiceNetworkPoliciesEnabledOnSubnet"
    template = (
        "Subnet {subnet} has privateLinkServiceNetworkPolicies Enabled; set it to Disabled "
        "before using the subnet for private link service NAT IPs."
    )


class PrivateLinkServiceNetworkPoliciesInUse(BadRequest):
    code = "PrivateLinkServiceNetworkPoliciesCannotBeEnabledOnPrivateLinkServiceSubnet"
    template = (
        "Subnet {subnet} holds NAT IPs of private link service {pls}; "
        "privateLinkServiceNetworkPolicies must stay Disabled."
    )


class InvalidVisibilitySubscription(BadRequest):
    code = "InvalidVisibilitySubscriptions"
    template = "'{value}' in {field} is not a subscription id (GUID){star}."


class AutoApprovalNotSubsetOfVisibility(BadRequest):
    code = "AutoApprovalSubscriptionsNotInVisibility"
    template = (
        "Subscription {value} is in autoApproval but not in visibility; auto-approval must "
        "be a subset of visibility."
    )


class SubscriptionListLimitExceeded(LimitExceeded):
    code = "SubscriptionListLimitExceeded"
    template = "{field} lists {count} subscriptions; at most {limit} are allowed."


class InvalidFqdn(BadRequest):
    code = "InvalidFqdn"
    template = "'{value}' in fqdns is not a valid fully qualified domain name."


class DuplicateSubscriptionInList(BadRequest):
    code = "DuplicateSubscriptionInPrivateLinkServiceList"
    template = (
        "Subscription '{value}' appears more than once in {field} (subscription ids compare "
        "case-insensitively); list each subscription once."
    )
    echo_limit = MAX_ECHO


class DuplicateFqdn(BadRequest):
    code = "DuplicateFqdnInPrivateLinkService"
    template = (
        "'{value}' appears more than once in fqdns (names compare case-insensitively, "
        "without a trailing dot); list each name once."
    )
    echo_limit = MAX_ECHO


class FqdnListLimitExceeded(LimitExceeded):
    code = "FqdnListLimitExceeded"
    template = "fqdns lists {count} names; at most {limit} are allowed."


class PrivateLinkServiceHasConnections(Conflict):
    code = "PrivateLinkServiceHasPrivateEndpointConnections"
    template = (
        "Private link service {id} still has {count} private endpoint connection(s); "
        "reject and delete them before deleting the service."
    )


# --- private link service Direct Connect (destinationIPAddress; core/direct_connect.py).
# Azure documents the rules (docs: "Configure Private Link service Direct Connect") but
# publishes no error codes for them: every code here is ours. ---------------------------


class DestinationIPAddressInvalid(BadRequest):
    code = "PrivateLinkServiceDestinationIPAddressInvalid"  # ours
    echo_limit = MAX_ECHO
    template = "destinationIPAddress '{value}' of private link service {id} is not an IPv4 address."


class DestinationWithLoadBalancerFrontends(BadRequest):
    code = "PrivateLinkServiceDestinationIPAddressWithLoadBalancerFrontends"  # ours
    template = (
        "Private link service {id} has both a destinationIPAddress (Direct Connect) and "
        "loadBalancerFrontendIpConfigurations; a service uses one or the other."
    )


class PrivateLinkServiceKindCannotChange(BadRequest):
    code = "PrivateLinkServiceDirectConnectMigrationNotSupported"  # ours
    template = (
        "Private link service {id} {was}; it cannot become {now}: migrating a service "
        "between a load balancer and Direct Connect is not supported. Create a new "
        "private link service instead."
    )


class DirectConnectNatIpConfigurationCount(BadRequest):
    code = "PrivateLinkServiceDirectConnectNatIpConfigurationCountInvalid"  # ours
    template = (
        "Private link service {id} has {count} NAT ipConfigurations; a Direct Connect "
        "service (destinationIPAddress) needs 2 to {limit}, in multiples of 2."
    )


class DirectConnectNatSubnetsInDifferentVirtualNetworks(BadRequest):
    code = "PrivateLinkServiceNatSubnetsInDifferentVnets"  # ours
    template = (
        "NAT ipConfiguration '{name}' uses subnet {subnet}, which is not in virtual network "
        "{vnet} of the service's other NAT ipConfigurations."
    )


class DestinationNotInVirtualNetwork(BadRequest):
    code = "PrivateLinkServiceDestinationIPAddressNotInVnet"  # ours
    template = (
        "destinationIPAddress {ip} of private link service {id} is not in the address space "
        "of virtual network {vnet} (the network of its NAT IPs); peered networks and "
        "on-premises sites are not supported as Direct Connect destinations."
    )


class DestinationIsPrivateEndpoint(BadRequest):
    code = "PrivateLinkServiceDestinationIPAddressIsPrivateEndpoint"  # ours
    template = (
        "destinationIPAddress {ip} of private link service {id} is the address of private "
        "endpoint {owner}; a private endpoint cannot be a Direct Connect destination."
    )


class DestinationIsNatIp(BadRequest):
    code = "PrivateLinkServiceDestinationIPAddressIsNatIp"  # ours
    template = (
        "destinationIPAddress {ip} of private link service {id} is a NAT IP of private link "
        "service {owner}; the destination must be another address."
    )


class DestinationNotSupported(BadRequest):
    code = "PrivateLinkServiceDestinationIPAddressNotSupported"  # ours
    template = (
        "destinationIPAddress {ip} of private link service {id} belongs to {owner}; a Direct "
        "Connect destination here must be a network interface's address (or one nothing "
        "holds yet). For a load balancer frontend use loadBalancerFrontendIpConfigurations."
    )


class DirectConnectLimitReached(LimitExceeded):
    code = "PrivateLinkServiceDirectConnectLimitReached"  # ours
    template = (
        "Subscription {subscription} already has {limit} Direct Connect private link "
        "services in region '{location}' (the limit)."
    )


# --- private endpoint ---------------------------------------------------------------------


class PrivateEndpointConnectionRequired(BadRequest):
    code = "PrivateEndpointRequiresOneConnection"
    template = (
        "Private endpoint {id} needs exactly one connection in privateLinkServiceConnections "
        "or manualPrivateLinkServiceConnections; it has {count}."
    )


class PrivateLinkServiceNotFound(BadRequest):
    code = "PrivateLinkServiceNotFound"
    template = "Private link service '{target}' was not found."


class PrivateEndpointLocationMismatch(BadRequest):
    code = "PrivateEndpointAndPrivateLinkServiceLocationMismatch"
    template = (
        "Private endpoint {id} in '{location}' cannot connect to a private link service in "
        "'{other}': they must be in the same region."
    )


class RequestMessageTooLong(BadRequest):
    code = "RequestMessageTooLong"
    template = "requestMessage has {length} characters; at most {limit} are allowed."


class PrivateEndpointsPerPrivateLinkServiceLimitReached(LimitExceeded):
    code = "PrivateEndpointsPerPrivateLinkServiceLimitReached"
    template = "Private link service already has {limit} private endpoint connections (the limit)."


class PrivateEndpointsPerVirtualNetworkLimitReached(LimitExceeded):
    code = "PrivateEndpointsPerVirtualNetworkLimitReached"
    template = "Virtual network {vnet} already has {limit} private endpoints (the limit)."


class PrivateEndpointConnectionTargetCannotChange(BadRequest):
    code = "PrivateEndpointConnectionCannotBeModified"
    template = (
        "Private endpoint {id}: the connection's name, target and kind cannot change; "
        "delete and recreate the endpoint."
    )


class PrivateEndpointSubnetCannotChange(BadRequest):
    code = "PrivateEndpointSubnetCannotBeModified"
    template = "Private endpoint {id}: the subnet cannot change; delete and recreate the endpoint."


class InvalidGroupIds(BadRequest):
    code = "InvalidGroupIds"
    template = "groupIds must be empty for a connection to a private link service (got {value})."


class PrivateEndpointIpConfigurationHasGroupId(BadRequest):
    code = "PrivateEndpointWithIpConfigurationsCannotHaveGroupIdsOrMemberNames"
    template = (
        "Private endpoint {id}: ipConfiguration '{name}' has groupId '{group_id}' and "
        "memberName '{member_name}'; a private link service has no groups, so both must be "
        "empty."
    )


class PrivateEndpointTooManyIpConfigurations(BadRequest):
    code = "PrivateEndpointTooManyIpConfigurations"
    template = (
        "Private endpoint {id} has {count} ipConfigurations; an endpoint to a private link "
        "service has one address, so at most {limit} is allowed."
    )


class PrivateEndpointIpConfigurationsCannotChange(BadRequest):
    code = "PrivateEndpointIpConfigurationsCannotBeModified"
    template = (
        "Private endpoint {id}: ipConfigurations (its static address) are set when it is "
        "created and cannot change; delete and recreate the endpoint."
    )


class PrivateEndpointNicNameCannotChange(BadRequest):
    code = "NameOfExistingPrivateEndpointNicCannotBeChanged"
    template = (
        "Private endpoint {id} contains existing NIC name {nic} which does not match the "
        "request's custom network interface name '{name}'. Updating the name of an existing "
        "NIC is not allowed."
    )


class PrivateEndpointApplicationSecurityGroupsLimitReached(LimitExceeded):
    code = "PrivateEndpointApplicationSecurityGroupsLimitReached"
    template = "Private endpoint {id} names {count} application security groups; at most {limit}."


# --- connections ---------------------------------------------------------------------------


class PrivateEndpointConnectionNotFound(NotFound):
    code = "PrivateEndpointConnectionNotFound"
    template = "Private endpoint connection '{name}' of {pls} was not found."


class InvalidConnectionStatus(BadRequest):
    code = "InvalidPrivateEndpointConnectionStatus"
    template = "Connection status '{status}' is not valid here; use Approved or Rejected."


class ConnectionStatusTransitionNotAllowed(BadRequest):
    code = "PrivateEndpointConnectionStatusTransitionNotAllowed"
    template = "A connection in state {current} cannot be set to {status}."


# --- network interface -----------------------------------------------------------------------


class ManagedNetworkInterfaceIsReadOnly(BadRequest):
    code = "CannotModifyNetworkInterfaceManagedByService"
    template = (
        "Network interface {id} is managed by {owner} and cannot be modified or deleted by users."
    )


class NetworkInterfaceIpConfigurationInvalid(BadRequest):
    code = "InvalidNetworkInterfaceIpConfiguration"


class ProvisioningFailed(BadRequest):
    code = "ProvisioningFailed"


# --- private DNS ------------------------------------------------------------------------


class InvalidPrivateDnsZoneName(BadRequest):
    code = "InvalidPrivateDnsZoneName"
    template = (
        "The zone name '{name}' is invalid: use at least two labels separated by '.', each "
        "1-63 letters, digits, '-' or '_' (not starting or ending with '-'), at most 253 "
        "characters in all."
    )


class InvalidRecordSetName(BadRequest):
    code = "InvalidRecordSetName"
    template = (
        "The record set name '{name}' is invalid in zone '{zone}': use '@' for the zone "
        "itself, or labels of 1-63 letters, digits, '-' or '_' separated by '.', the first "
        "of which may be '*'; the full name may have at most 253 characters."
    )


class UnsupportedRecordType(BadRequest):
    code = "UnsupportedRecordType"
    template = (
        "Record type '{type}' is not supported by privatelink private DNS zones; "
        "supported: A (and the zone's own SOA, read-only)."
    )


class InvalidRecordSetTtl(BadRequest):
    code = "InvalidRecordSetTtl"
    template = "TTL {ttl} is invalid: use 0 to 2147483647 seconds."


class InvalidARecord(BadRequest):
    code = "InvalidARecord"
    template = "'{value}' is not an IPv4 address (A records hold IPv4 addresses only)."


class PrivateDnsZoneLocationMustBeGlobal(BadRequest):
    code = "PrivateDnsZoneLocationMustBeGlobal"
    template = "Private DNS zones and their links have location 'global', not '{location}'."


class VirtualNetworkLinkTargetNotFound(BadRequest):
    code = "VirtualNetworkLinkTargetNotFound"
    template = "The virtual network '{vnet}' of link '{id}' was not found."


class VirtualNetworkLinkAlreadyExists(Conflict):
    code = "VirtualNetworkLinkAlreadyExists"
    template = "Private zone '{zone}' is already linked to the virtual network '{vnet}' ({link})."


class VirtualNetworkLinkOverlappingZones(BadRequest):
    code = "VirtualNetworkLinkOverlappingZones"
    template = (
        "A virtual network cannot be linked to multiple zones with overlapping namespaces. "
        "You tried to link virtual network '{vnet}' with '{zone}' and '{other}' zones."
    )


class VirtualNetworkLinkCannotChange(BadRequest):
    code = "VirtualNetworkLinkCannotChange"
    template = (
        "The virtual network of link '{id}' cannot change; delete the link and create it again."
    )


class PrivateDnsZoneHasVirtualNetworkLinks(Conflict):
    code = "PrivateDnsZoneHasVirtualNetworkLinks"
    template = (
        "The private DNS zone '{id}' cannot be deleted because it has {count} virtual "
        "network link(s); delete them first."
    )


class PrivateDnsZoneNotFound(BadRequest):
    code = "PrivateDnsZoneNotFound"
    template = "The private DNS zone '{zone}' referenced by '{id}' was not found."


class OnlyOnePrivateDnsZoneGroupPerPrivateEndpointAllowed(BadRequest):
    code = "OnlyOnePrivateDnsZoneGroupPerPrivateEndpointAllowed"
    template = (
        "Private endpoint '{endpoint}' already has the private DNS zone group '{other}'; "
        "an endpoint has at most one."
    )


class PrivateDnsZoneConfigsLimitReached(LimitExceeded):
    code = "PrivateDnsZoneConfigsLimitReached"
    template = "A private DNS zone group has at most {limit} zone configurations, not {count}."


class DuplicatePrivateDnsZoneInGroup(BadRequest):
    code = "DuplicatePrivateDnsZoneInGroup"
    template = "The private DNS zone '{zone}' appears twice in zone group '{id}'."


class PrivateDnsZoneConfigRequired(BadRequest):
    code = "PrivateDnsZoneConfigRequired"
    template = (
        "Zone group '{id}' needs properties.privateDnsZoneConfigs with at least one "
        "{{name, properties.privateDnsZoneId}}."
    )


# --- store faults (the database behind the server; see store/faults.py) -----------------


class StoreFault(ArmError):
    """The server's own database failed the request: not the caller's fault.

    `retry_after` (seconds, or None) goes out as the `Retry-After` header, which Azure
    SDKs and az honour by retrying the request after that long.
    """

    status = 503
    code = "StoreUnavailable"
    retry_after: int | None = None

    def __init__(
        self, message: str | None = None, *, retry_after: int | None = None, **fields: Any
    ) -> None:
        super().__init__(message, **fields)
        if retry_after is not None:
            self.retry_after = retry_after


class StoreUnavailable(StoreFault):
    """503: the database cannot be reached, is restarting, or stayed locked too long.

    The transaction was rolled back (or never began); retrying later is the remedy. Only
    a connection lost while its COMMIT was in flight leaves the outcome unknown, which
    the retry of an idempotent ARM request (PUT, DELETE) settles.
    """

    status = 503
    code = "StoreUnavailable"
    retry_after = 5
    template = (
        "The request failed because the server's database is unavailable ({reason}). "
        "Retry the request in {seconds} seconds."
    )

    def __init__(self, reason: str, *, retry_after: int | None = None) -> None:
        seconds = retry_after if retry_after is not None else type(self).retry_after
        super().__init__(reason=reason, seconds=seconds, retry_after=retry_after)


class InsufficientStorage(StoreFault):
    """507: the database's disk is full; nothing was written. An operator must free space."""

    status = 507
    code = "InsufficientStorage"
    template = (
        "The request failed because the server's database has no space left ({reason}); "
        "nothing was written. Free space on the volume that holds the database, then retry."
    )

    def __init__(self, reason: str) -> None:
        super().__init__(reason=reason)


# --- reach: public IPs, gateways, connections ---------------------------------------------
# Codes as Azure's network resource provider returns them; those marked "ours" have no
# Azure code we could find (the name says what is wrong).


class PublicIPAddressCannotBeDeleted(BadRequest):
    code = "PublicIPAddressCannotBeDeleted"
    template = (
        "Public IP address {id} can not be deleted since it is still allocated to resource "
        "{user}. In order to delete the public IP, disassociate/detach the Public IP address "
        "from the resource."
    )


class PublicIPAddressInUse(BadRequest):
    code = "PublicIPAddressInUse"  # ours
    template = (
        "Public IP address {pip} is already used by {user}; {id} cannot use it too: a public "
        "IP serves one frontend or gateway at a time."
    )


class StandardSkuPublicIPAddressesMustBeStatic(BadRequest):
    code = "StandardSkuPublicIPAddressesMustBeStatic"
    template = "Standard sku publicIp {id} must have AllocationMethod set to Static."


class BasicSkuPublicIPAddressesRetired(BadRequest):
    code = "IPv4BasicSkuPublicIpCountLimitReached"
    template = (
        "Cannot create more than 0 IPv4 Basic SKU public IP addresses for this subscription "
        "in this region ({id}): Basic SKU public IPs were retired on 30 September 2025. Use "
        "sku Standard with publicIPAllocationMethod Static."
    )


class PublicIPCountLimitReached(LimitExceeded):
    code = "PublicIPCountLimitReached"
    template = (
        "No public IP address is left in this server's public range {range} (its last two "
        "host addresses are reserved); delete unused public IPs or configure a larger "
        "public_ip_range."
    )


class InvalidPublicIPIdleTimeout(BadRequest):
    code = "PublicIPIdleTimeoutOutOfRange"  # ours
    template = "idleTimeoutInMinutes {value} is out of range: use {low} to {high}."


class PublicIPAddressPropertyCannotChange(BadRequest):
    code = "PublicIPAddressPropertyCannotChange"  # ours
    template = "Public IP address {id}: {field} cannot change once it is created."


class PublicIPAndLBSkuDoNotMatch(BadRequest):
    code = "PublicIPAndLBSkuDoNotMatch"
    template = "{sku} sku load balancer {lb} cannot reference {pip_sku} sku publicIP {pip}."


class FrontendIPConfigHasBothSubnetAndPublicIP(BadRequest):
    code = "FrontendIPConfigHasBothSubnetAndPublicIP"
    template = (
        "Frontend IP Configuration {id} must not reference both a Subnet and a Public IP Address."
    )


class FrontendIPConfigHasNoSubnetOrPublicIP(BadRequest):
    code = "FrontendIPConfigHasNoSubnetOrPublicIP"
    template = (
        "Frontend IP Configuration {id} must reference either a Subnet or a Public IP Address."
    )


class LoadBalancerMixesPublicAndPrivateFrontends(BadRequest):
    code = "LoadBalancerCannotHavePublicAndPrivateFrontendIPConfigurations"  # ours
    template = (
        "Load balancer {id} has the public frontend {public} and the private frontend "
        "{private}: a load balancer is either public or internal, not both. Use two load "
        "balancers."
    )


class SubnetIsGatewaySubnet(BadRequest):
    code = "GatewaySubnet"
    template = (
        "{id} cannot use subnet {subnet}: the subnet named GatewaySubnet is reserved for "
        "virtual network gateways. Use another subnet."
    )


class GatewaySubnetRequired(BadRequest):
    code = "VirtualNetworkGatewaySubnetMustBeNamedGatewaySubnet"  # ours
    template = (
        "Virtual network gateway {id} references subnet {subnet}: a gateway's ipConfiguration "
        "must use the subnet named GatewaySubnet of its virtual network."
    )


class GatewaySubnetTooSmall(BadRequest):
    code = "GatewaySubnetTooSmall"  # ours
    template = (
        "GatewaySubnet {subnet} has prefix {prefix}: a gateway subnet must be /29 or larger "
        "(Azure recommends /27)."
    )


class VirtualNetworkGatewayAlreadyExists(BadRequest):
    code = "OnlyOneVpnGatewayPerVirtualNetwork"  # ours
    template = (
        "Virtual network {vnet} already has the VPN gateway {other}; a virtual network has "
        "at most one, so {id} cannot use it."
    )


class VirtualNetworkGatewaySkuNotSupported(BadRequest):
    code = "VirtualNetworkGatewaySkuNotSupported"  # ours
    template = "Virtual network gateway {id}: sku '{sku}' is not supported: {why}"


class VirtualNetworkGatewayIpConfigurationCount(BadRequest):
    code = "VirtualNetworkGatewayIpConfigurationCountInvalid"  # ours
    template = (
        "Virtual network gateway {id} has {count} ipConfigurations; an active-standby VPN "
        "gateway has exactly one (subnet GatewaySubnet and a Standard static public IP)."
    )


class VirtualNetworkGatewayIpConfigurationCannotChange(BadRequest):
    code = "VirtualNetworkGatewayIpConfigurationCannotChange"  # ours
    template = (
        "Virtual network gateway {id}: the {field} of ipConfiguration '{name}' cannot change; "
        "delete the gateway and create it again."
    )


class VirtualNetworkGatewayCannotBeDeleted(BadRequest):
    code = "VirtualNetworkGatewayCannotBeDeleted"
    template = (
        "Virtual network gateway {id} cannot be deleted because connection {connection} "
        "uses it; delete the connection first."
    )


class LocalNetworkGatewayCannotBeDeleted(BadRequest):
    code = "LocalNetworkGatewayCannotBeDeleted"  # by analogy with the gateway's
    template = (
        "Local network gateway {id} cannot be deleted because connection {connection} uses "
        "it; delete the connection first."
    )


class LocalNetworkGatewayIpAddressRequired(BadRequest):
    code = "LocalNetworkGatewayIpAddressRequired"  # ours
    template = (
        "Local network gateway {id} needs properties.gatewayIpAddress (the IPv4 address of "
        "the on-premises VPN device)."
    )


class InvalidLocalNetworkGatewayIpAddress(BadRequest):
    code = "InvalidLocalNetworkGatewayIpAddress"  # ours
    echo_limit = MAX_ECHO
    template = "gatewayIpAddress '{value}' of local network gateway {id} is not an IPv4 address."


class LocalNetworkAddressSpaceOverlapsVirtualNetwork(BadRequest):
    code = "LocalNetworkGatewayAddressSpaceOverlapsVirtualNetwork"  # ours
    template = (
        "Address prefix {prefix} of local network gateway {lng} overlaps address prefix "
        "{other} of virtual network {vnet} behind gateway {gateway} (connection {id}); the "
        "networks on both sides of a connection must not overlap."
    )


class ConnectionReferenceCannotChange(BadRequest):
    code = "VirtualNetworkGatewayConnectionReferenceCannotChange"  # ours
    template = (
        "Connection {id}: {field} cannot change from {old} to {new}; delete the connection "
        "and create it again."
    )


class InvalidSharedKey(BadRequest):
    code = "InvalidSharedKey"  # ours
    template = (
        "The shared key of connection {id} is invalid: use 1 to 128 printable ASCII "
        "characters (letters, digits and punctuation) except space, hyphen (-) and tilde (~)."
    )


# --- on-premises sites (admin) -------------------------------------------------------------
# Sites are the server's own objects (`privatelink site ...`, core/site.py), not ARM
# resources: the codes are ours.


class SiteNotFound(NotFound):
    code = "SiteNotFound"
    echo_limit = MAX_ECHO
    template = "The site '{name}' could not be found."


class SiteAlreadyExists(Conflict):
    code = "SiteAlreadyExists"
    echo_limit = MAX_ECHO
    template = "A site named '{name}' already exists (names are case-insensitive)."


class InvalidSiteName(BadRequest):
    code = "InvalidSiteName"
    echo_limit = MAX_ECHO
    template = (
        "The site name '{name}' is invalid: use 1-40 letters, digits, '_' or '-', starting "
        "with a letter or digit."
    )


class InvalidSiteAddressSpace(BadRequest):
    code = "InvalidSiteAddressSpace"
    template = "The address space of site '{name}' is invalid: {why}"


class InvalidSiteGatewayIp(BadRequest):
    code = "InvalidSiteGatewayIp"
    echo_limit = MAX_ECHO
    template = "The gateway IP '{value}' of site '{name}' is not an IPv4 address."


class SiteGatewayIpOutsidePublicRange(BadRequest):
    code = "SiteGatewayIpOutsidePublicRange"
    echo_limit = MAX_ECHO
    template = (
        "The gateway IP {value} of site '{name}' must be a host address of the public range "
        "{range}, from {first} to {last} (the last two hosts are the data plane's)."
    )


class SiteGatewayIpInUse(Conflict):
    code = "SiteGatewayIpInUse"
    template = "The gateway IP {value} of site '{name}' is already held by {holder}."


# --- private link service access mode ----------------------------------------------------


class InvalidAccessMode(BadRequest):
    code = "InvalidPrivateLinkServiceAccessMode"
    echo_limit = MAX_ECHO
    template = "accessMode '{value}' is invalid: use Default or Restricted."


class RestrictedAccessModeWithEveryone(BadRequest):
    code = "PrivateLinkServiceRestrictedAccessModeRequiresSubscriptionList"
    template = (
        "Private link service {id} has accessMode Restricted, which admits only the "
        "subscriptions named in visibility.subscriptions; '*' (every subscription) cannot be "
        "one of them. Name the subscriptions, or use accessMode Default."
    )


class PrivateLinkServiceAccessRestricted(ArmError):
    status = 403
    code = "PrivateLinkServiceAccessRestricted"
    template = (
        "Private link service {id} has accessMode Restricted: only subscriptions in its "
        "visibility list may connect, and subscription {subscription} is not in it (rights "
        "on the service do not admit it)."
    )
