package ciclient_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"strconv"
	"testing"
)

func tlsTrusting(t *testing.T, caFile string) *tls.Config {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func sessionValue() string { return "uid:" + strconv.Itoa(os.Getuid()) }
