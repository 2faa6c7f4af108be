package model

import (
	"crypto/sha256"
	"encoding/hex"
)

// SVIDDigest names one issued SVID: the hex SHA-256 of the X.509 leaf
// certificate's DER, or of the JWT-SVID's compact serialization. The
// server records each workload SVID's binding to its entry and node under
// it (store.SVIDBinding), and the token endpoint computes it from the SVID
// a caller presents.
func SVIDDigest(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// SVIDDigestLen is the length of an SVIDDigest.
const SVIDDigestLen = sha256.Size * 2
