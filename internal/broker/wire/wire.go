// Package wire holds the names a credential request carries at the token
// endpoint (POST /oauth2/token, RFC 8693): what both the broker's issuer
// (internal/broker/exchange) and its clients (internal/brokerclient, the
// helper, exec and the gateway) agree on. It imports nothing, so that
// clients on every node do not link the server's store or CA.
package wire

// TokenTypeCredential is the requested_token_type of brokered credentials.
const TokenTypeCredential = "urn:signet:params:oauth:token-type:credential"

// Parameters of a credential request besides RFC 8693's.
const (
	// ParamContext carries the task context, a JSON object.
	ParamContext = "request_context"
	// ParamTTL carries the lifetime asked for ("5m", "300s").
	ParamTTL = "ttl"
	// ParamPublicKey carries the client's SSH public key (authorized_keys
	// format) for credentials that certify a key generated on the client.
	ParamPublicKey = "public_key"
)
