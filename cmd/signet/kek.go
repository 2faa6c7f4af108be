package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/atomicfile"
	"github.com/signet-id/signet/internal/broker/seal"
)

// newServerKEKCmd builds `server kek`: making a key-encryption key (for
// key_manager: sealed and broker.kek_file) and installing one from a
// mounted Secret into the owner-only file the server reads.
func newServerKEKCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kek",
		Short: "Make or install a key-encryption key (key_manager: sealed, broker.kek_file)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "generate FILE",
		Short: "Write a new key-encryption key (32 random bytes, mode 0600) to FILE, which must not exist",
		Long: "Write a new key-encryption key to FILE: 32 bytes from the system's random source, mode 0600.\n" +
			"An existing FILE is never overwritten: replacing the KEK of a store makes its sealed keys and\n" +
			"secrets unreadable. The key's id (a hash, not the key) is printed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := generateKEK(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key-encryption key %s written to %s\n", id, args[0])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "install SOURCE FILE",
		Short: "Copy the key-encryption key SOURCE into FILE, mode 0600 (e.g. from a mounted Kubernetes Secret)",
		Long: "Copy the key-encryption key SOURCE into FILE, atomically, with mode 0600 and owned by the\n" +
			"user running the command, then check that FILE is a KEK the server accepts.\n\n" +
			"It is for a Kubernetes Secret mounted in a pod with an fsGroup: the kubelet makes such files\n" +
			"group-readable (0440) whatever the volume's defaultMode, and the server refuses a KEK its\n" +
			"group can read. Run it in an init container that writes FILE to an emptyDir (medium Memory)\n" +
			"the server mounts (the Helm chart does, with server.keyManager.type=sealed). SOURCE may be\n" +
			"group-readable but not group-writable, nor open to others.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := installKEK(args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key-encryption key %s installed at %s\n", id, args[1])
			return nil
		},
	})
	return cmd
}

// generateKEK writes a new KEK to path, refusing an existing file, and
// returns its id.
func generateKEK(path string) (string, error) {
	key := make([]byte, seal.KeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("FILE: read random bytes: %w", err)
	}
	s, err := seal.New(key)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("FILE: %s exists: a key-encryption key is never overwritten (its store's sealed keys would be lost); name a new file", path)
	}
	if err != nil {
		return "", fmt.Errorf("FILE: %w", err)
	}
	// The umask may have narrowed the mode; it must be exactly 0600.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(key)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = atomicfile.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("FILE: write %s: %w", path, err)
	}
	return s.KeyID(), nil
}

// installKEK copies the KEK at src into dst with mode 0600 and returns its
// id, after reading dst back as the server will.
func installKEK(src, dst string) (string, error) {
	if abs(src) == abs(dst) {
		return "", fmt.Errorf("FILE: %s is SOURCE itself: install into another file", dst)
	}
	key, err := seal.ReadKeyFile("SOURCE", src, seal.NotOthers)
	if err != nil {
		return "", err
	}
	defer clear(key)
	if err := atomicfile.WriteFile(dst, key, 0o600); err != nil {
		return "", fmt.Errorf("FILE: %w", err)
	}
	s, err := seal.LoadFile("FILE", dst)
	if err != nil {
		return "", err
	}
	return s.KeyID(), nil
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return filepath.Clean(a)
	}
	return p
}
