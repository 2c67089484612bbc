"""Member authentication: SIP digest (RFC 3261 22, RFC 7616, RFC 8760) and access policy.

Pure modules, no I/O: `digest` parses and checks Authorization header fields,
`nonce` issues and checks nonces, `lockout` counts failures per source,
`credentials` holds user -> HA1 per realm and algorithm, `policy` says who may
use a conference and `guard` puts them together into one verdict per request.
"""
