package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/signet-id/signet/internal/agentcli"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
)

// Defaults shared by the server and the admin commands.
const (
	defaultServerDataDir = agentcli.DefaultServerDataDir
	defaultAgentDataDir  = agentcli.DefaultAgentDataDir
	defaultAgentSocket   = agentcli.DefaultAgentSocket
	adminSocketEnv       = agentcli.AdminSocketEnv
	maxAdminMessage      = 256 << 20
	adminCallTimeout     = 60 * time.Second
)

// adminConn holds the --admin-socket flag of an admin command.
type adminConn struct{ socket string }

func (a *adminConn) addFlags(cmd *cobra.Command) {
	agentcli.AddAdminSocketFlag(cmd, &a.socket)
}

// dial connects to the admin socket (every admin service: Admin, Inventory,
// Audit), checking first that the socket is there and reachable so the
// error says what to do. The caller closes the connection.
func (a *adminConn) dial() (*grpc.ClientConn, error) {
	fi, err := os.Stat(a.socket)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no admin socket at %s: is `signet server run` running? Point to it with --admin-socket or %s", a.socket, adminSocketEnv)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("admin socket %s: permission denied: run as the server's user or root", a.socket)
	case err != nil:
		return nil, fmt.Errorf("admin socket: %w", err)
	case fi.Mode()&fs.ModeSocket == 0:
		return nil, fmt.Errorf("admin socket %s is not a socket", a.socket)
	}
	conn, err := grpc.NewClient("unix://"+a.socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxAdminMessage), grpc.MaxCallSendMsgSize(maxAdminMessage)))
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", a.socket, err)
	}
	return conn, nil
}

// client returns an admin API client on the socket. The returned func
// closes the connection.
func (a *adminConn) client() (adminv1.AdminClient, func(), error) {
	conn, err := a.dial()
	if err != nil {
		return nil, nil, err
	}
	return adminv1.NewAdminClient(conn), func() { _ = conn.Close() }, nil
}

// call runs fn with a connected admin client and a deadline, and turns gRPC
// errors into one-line messages.
func (a *adminConn) call(cmd *cobra.Command, fn func(ctx context.Context, c adminv1.AdminClient) error) error {
	c, closeFn, err := a.client()
	if err != nil {
		return err
	}
	defer closeFn()
	ctx, cancel := context.WithTimeout(cmd.Context(), adminCallTimeout)
	defer cancel()
	return rpcErr(fn(ctx, c))
}

// rpcErr makes a gRPC error readable: its message, and a hint for the
// transport failures operators meet most.
func rpcErr(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return agentcli.RPCErr(err)
}

// output is the output format option of read commands: -o table|json,
// with --json kept as the alias of -o json.
type output struct{ json bool }

// addFlags registers -o/--output and --json on cmd.
func (o *output) addFlags(cmd *cobra.Command) { o.addFlagsFor(cmd, "JSON") }

// addFlagsFor registers the flags, describing the JSON form as jsonForm.
func (o *output) addFlagsFor(cmd *cobra.Command, jsonForm string) {
	agentcli.AddOutputFlags(cmd, &o.json, jsonForm)
}

func writeJSON(w io.Writer, v any) error { return agentcli.WriteJSON(w, v) }

// fmtTime renders a timestamp for tables; zero is "-".
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func unixTime(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}
