package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/preflight"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/store"
)

// clockSkew is how far the clock may lag what the store recorded before
// doctor calls it wrong.
const clockSkew = 5 * time.Minute

// server checks a server's setup from its configuration file (or the
// defaults), in the order a start would meet the problems.
func (d *doctor) server(cmd *cobra.Command, configPath string) *doctorReport {
	r := &doctorReport{Role: "server", Config: configPath}
	f := &serverFlags{configPath: configPath, flags: doctorFlags(serverDefaults())}
	cfg, c, err := f.resolve()
	if err != nil {
		r.problem("config", oneLine(err), configFix(configPath))
		return r
	}
	if err := cfg.Check(); err != nil {
		for _, e := range splitJoined(err) {
			r.problem("config", e, configFix(configPath))
		}
	} else {
		r.ok("config", "valid (trust domain %s)", cfg.TrustDomain)
	}
	if cfg.AdminSocket == "" {
		cfg.AdminSocket = filepath.Join(cfg.DataDir, "admin.sock")
	}
	if cfg.StoreDriver == store.DriverSQLite && cfg.StoreDSN == "" {
		cfg.StoreDSN = filepath.Join(cfg.DataDir, "signet.db")
	}

	if err := preflight.DataDir("data_dir", cfg.DataDir); err != nil {
		r.problemErr("data_dir", err, "")
	} else if _, err := os.Stat(cfg.DataDir); err != nil {
		r.ok("data_dir", "%s does not exist yet: the server creates it (0700) on its first start", cfg.DataDir)
	} else {
		r.ok("data_dir", "%s is owned by this user and writable by no one else", cfg.DataDir)
	}
	d.serverKeyFiles(r, cfg, c)
	st := d.serverStore(cmd.Context(), r, cfg)
	if st != nil {
		d.serverAuthorities(cmd.Context(), r, st)
		st.Close()
	}
	d.serverListeners(r, cfg)
	return r
}

// serverKeyFiles checks the modes of the disk key manager's directory and
// keys, the HTTPS key and the broker's KEK.
func (d *doctor) serverKeyFiles(r *doctorReport, cfg server.Config, c config.Server) {
	n := 0
	if dir, ok := diskKeyDir(cfg); ok {
		if err := preflight.PrivateDir("key_manager.disk.dir", dir); err != nil {
			r.problemErr("key_file", err, "")
		}
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.problem("key_file", fmt.Sprintf("read key directory %s: %v", dir, err), "make it readable by the server's user")
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".pem") {
				continue
			}
			n++
			if err := preflight.PrivateFile("key", filepath.Join(dir, e.Name())); err != nil {
				r.problemErr("key_file", err, "")
			}
		}
	}
	for _, k := range []struct{ name, path string }{
		{"http_tls.key_file", c.HTTPTLS.KeyFile}, {"broker.kek_file", c.Broker.KEKFile},
	} {
		if k.path == "" {
			continue
		}
		n++
		if err := preflight.PrivateFile(k.name, k.path); err != nil {
			r.problemErr("key_file", err, "")
		}
	}
	if !slices.ContainsFunc(r.Checks, func(c doctorCheck) bool { return c.Check == "key_file" }) {
		r.ok("key_file", "%d key file(s), each readable by this user only", n)
	}
}

// diskKeyDir is the directory of the disk key manager: key_manager.disk.dir,
// else DATA_DIR/keys; false for another kind of key manager.
func diskKeyDir(cfg server.Config) (string, bool) {
	names := cfg.KeyManager.Names()
	if len(names) == 0 {
		return filepath.Join(cfg.DataDir, "keys"), true
	}
	if len(names) != 1 || names[0] != "disk" {
		return "", false
	}
	n := cfg.KeyManager["disk"]
	var dc struct {
		Dir string `yaml:"dir"`
	}
	if err := n.Decode(&dc); err != nil || dc.Dir == "" {
		return filepath.Join(cfg.DataDir, "keys"), true
	}
	return dc.Dir, true
}

// serverStore checks that the store answers and how far its schema is
// migrated. It returns the store, opened, when its schema is current (so
// that opening it migrates nothing), for the checks that read it.
func (d *doctor) serverStore(ctx context.Context, r *doctorReport, cfg server.Config) *store.Store {
	if cfg.StoreDriver == store.DriverSQLite {
		if _, err := os.Stat(cfg.StoreDSN); errors.Is(err, fs.ErrNotExist) {
			r.ok("store", "sqlite database %s does not exist yet: the server creates it on its first start", cfg.StoreDSN)
			return nil
		}
		// The database holds sealed secrets, token hashes and the audit log.
		if err := preflight.PrivateFile("store.dsn", cfg.StoreDSN); err != nil {
			r.problemErr("store", err, "")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	scfg := store.Config{Driver: cfg.StoreDriver, DSN: cfg.StoreDSN}
	ss, err := store.InspectSchema(ctx, scfg)
	if err != nil {
		r.problem("store", oneLine(err), "check store.driver and store.dsn, and that the database is up and accepts this user")
		return nil
	}
	switch {
	case ss.Current > ss.Latest:
		r.problem("store", fmt.Sprintf("schema version %d is newer than this signet knows (%d): a newer server migrated it", ss.Current, ss.Latest),
			"run the signet version the other servers run")
		return nil
	case ss.Pending():
		r.ok("store", "%s store reachable; schema version %d, migrated to %d on the next start", cfg.StoreDriver, ss.Current, ss.Latest)
		return nil
	}
	r.ok("store", "%s store reachable; schema version %d (current)", cfg.StoreDriver, ss.Current)
	st, err := store.Open(ctx, scfg)
	if err != nil {
		r.problem("store", oneLine(err), "check store.driver and store.dsn")
		return nil
	}
	return st
}

// serverAuthorities checks that each kind of authority has an active one,
// valid now, with a successor prepared in time, and that the clock is not
// behind what the store recorded.
func (d *doctor) serverAuthorities(ctx context.Context, r *doctorReport, st *store.Store) {
	auths, err := st.ListAuthorities(ctx)
	if err != nil {
		r.problem("authority", oneLine(err), "check the store")
		return
	}
	now := d.now()
	var latest time.Time
	for _, kind := range []model.AuthorityKind{store.AuthorityX509, store.AuthorityJWT} {
		var active, prepared []store.Authority
		for _, a := range auths {
			if a.UpdatedAt.After(latest) {
				latest = a.UpdatedAt
			}
			if a.Kind != kind {
				continue
			}
			switch a.State {
			case store.StateActive:
				active = append(active, a)
			case store.StatePrepared:
				prepared = append(prepared, a)
			}
		}
		if len(active) == 0 {
			r.problem("authority", fmt.Sprintf("no active %s authority", kind),
				fmt.Sprintf("start the server (it makes one), or run: signet authority prepare %s && signet authority activate %s", kind, kind))
			continue
		}
		a := active[len(active)-1] // ordered by NotBefore: the newest
		life := a.NotAfter.Sub(a.NotBefore)
		switch {
		case !now.Before(a.NotAfter):
			r.problem("authority", fmt.Sprintf("the active %s authority %s expired at %s", kind, a.ID, a.NotAfter.UTC().Format(time.RFC3339)),
				fmt.Sprintf("start the server to rotate, or run: signet authority prepare %s && signet authority activate %s", kind, kind))
		case now.After(a.NotBefore.Add(life*5/6)) && len(prepared) == 0:
			r.problem("authority", fmt.Sprintf("the active %s authority %s is past 5/6 of its lifetime and has no prepared successor: rotation is behind", kind, a.ID),
				fmt.Sprintf("check that a server is running, or run: signet authority prepare %s", kind))
		default:
			state := "no successor prepared yet"
			if len(prepared) > 0 {
				state = "successor prepared"
			}
			r.ok("authority", "%s: active authority valid, %s", kind, state)
		}
	}
	if !latest.IsZero() && now.Before(latest.Add(-clockSkew)) {
		r.problem("clock", fmt.Sprintf("the clock reads %s, before the store's last authority change at %s", now.UTC().Format(time.RFC3339), latest.UTC().Format(time.RFC3339)),
			"fix the system clock (timedatectl set-ntp true)")
		return
	}
	for _, a := range auths {
		if a.State == store.StateActive && now.Before(a.NotBefore.Add(-clockSkew)) {
			r.problem("clock", fmt.Sprintf("the clock reads %s, before the active %s authority's start %s", now.UTC().Format(time.RFC3339), a.Kind, a.NotBefore.UTC().Format(time.RFC3339)),
				"fix the system clock (timedatectl set-ntp true)")
			return
		}
	}
	r.ok("clock", "consistent with the store's authorities")
}

// serverListeners checks the admin socket and that each address can be
// bound; when the admin socket answers, a server runs and its addresses
// are expected to be taken.
func (d *doctor) serverListeners(r *doctorReport, cfg server.Config) {
	running := false
	if err := preflight.SocketPath("admin_socket", cfg.AdminSocket); errors.Is(err, preflight.ErrInUse) {
		running = true
		r.ok("listen", "admin_socket %s answers: a server is running", cfg.AdminSocket)
	} else if err != nil {
		r.problemErr("listen", err, "")
	} else {
		r.ok("listen", "admin_socket %s is free", cfg.AdminSocket)
	}
	for _, l := range []struct{ name, addr string }{
		{"bind_address", cfg.BindAddress}, {"http_address", cfg.HTTPAddress}, {"health_address", cfg.HealthAddress},
	} {
		if l.addr == "" {
			continue
		}
		err := preflight.TCPFree(l.name, l.addr)
		switch {
		case err == nil:
			r.ok("listen", "%s %s can be bound", l.name, l.addr)
		case errors.Is(err, preflight.ErrInUse) && running:
			r.ok("listen", "%s %s is in use, by the running server presumably", l.name, l.addr)
		case errors.Is(err, preflight.ErrInUse):
			r.problem("listen", fmt.Sprintf("%s %s is in use by another process", l.name, l.addr),
				fmt.Sprintf("find it with: ss -ltnp 'sport = :%s'; stop it or choose another %s", portOf(l.addr), l.name))
		default:
			r.problemErr("listen", err, "choose an address of this host for "+l.name)
		}
	}
}

func portOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

// splitJoined returns the messages of an errors.Join result, one per line.
func splitJoined(err error) []string {
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// oneLine keeps a report line on one line.
func oneLine(err error) string { return strings.Join(splitJoined(err), "; ") }

func orDefaults(configPath string) string {
	if configPath == "" {
		return "the flags (or give --config FILE)"
	}
	return configPath
}

// configFix is the fix of a configuration problem: edit what holds it, or,
// when --config names no file, create it or name the right one.
func configFix(configPath string) string {
	if configPath != "" {
		if _, err := os.Stat(configPath); errors.Is(err, fs.ErrNotExist) {
			return "create " + configPath + " or give --config the file that exists"
		}
	}
	return "edit " + orDefaults(configPath)
}
