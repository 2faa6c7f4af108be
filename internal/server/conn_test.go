package server_test

import (
	"testing"

	"google.golang.org/grpc"

	"github.com/signet-id/signet/internal/testenv"
)

// anonConn is a TLS connection to the agent API without a client cert.
func anonConn(t *testing.T, env *testenv.Env) grpc.ClientConnInterface {
	return agentConnRaw(env.Dial(nil))
}

// agentConnRaw exposes the connection under an AgentConn for other stubs.
func agentConnRaw(a *testenv.AgentConn) grpc.ClientConnInterface { return a.Conn() }
