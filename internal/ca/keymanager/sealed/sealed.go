// Package sealed is the key manager that keeps the CA's private keys in
// the shared store, sealed (AES-256-GCM, package broker/seal) under a
// key-encryption key (KEK) read from a file every server replica is given.
// Every replica of the trust domain can then sign with the same X.509 and
// JWT authorities: the Manager (package ca) sees a ca.SharedKeyManager and
// keeps one set of authorities for the trust domain instead of one per
// replica.
//
// The store holds only ciphertexts, each bound to its key id (a sealed key
// copied to another row does not open), and a KEK check value: a replica
// given another KEK file than the first one is refused at start-up, before
// it creates anything. Plaintext keys exist only in the replicas' memory;
// they never reach the store or a log.
//
// It is registered under Name; its configuration is Config.
package sealed

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/signet-id/signet/internal/broker/seal"
	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/errkind"
)

// Name is the key manager's name in the plugin registry and in
// configuration files.
const Name = "sealed"

// kekField names the KEK setting in errors.
const kekField = "key_manager.sealed.kek_file"

// Purposes of the values this package seals (part of their associated
// data, so they never open as a broker secret or the other way round).
const (
	purposeKey   = "ca-key"
	purposeCheck = "ca-kek-check"
	checkText    = "signet ca kek check v1"
)

// Store is the part of the server's store the key manager uses (the SQL
// store implements it; migration 00014).
type Store interface {
	// EnsureCAKEK records check unless a check value is recorded already,
	// and returns the recorded one.
	EnsureCAKEK(ctx context.Context, kekID string, check []byte) ([]byte, error)
	// PutCAKey stores or replaces the sealed key id.
	PutCAKey(ctx context.Context, id, kekID string, sealed []byte) error
	// CAKey returns the sealed key id; NotFound when there is none.
	CAKey(ctx context.Context, id string) ([]byte, error)
	// DeleteCAKey removes the sealed key id; a missing key is not an error.
	DeleteCAKey(ctx context.Context, id string) error
}

// Config configures a KeyManager.
type Config struct {
	// KEKFile is the file holding the 32-byte key-encryption key, mode 0600
	// or stricter. Every replica of the trust domain is given the same one.
	// Required.
	KEKFile string `yaml:"kek_file"`
}

// KeyManager seals keys into the store. It is safe for concurrent use;
// KeyManagers of several replicas over one store see each other's keys.
type KeyManager struct {
	store  Store
	sealer *seal.Sealer
}

var _ ca.SharedKeyManager = (*KeyManager)(nil)

// New loads the KEK and checks it against the store's check value, which
// it records when the store has none (the first replica to start). A
// different KEK is FailedPrecondition, naming both KEK ids.
func New(ctx context.Context, cfg Config, st Store) (*KeyManager, error) {
	if cfg.KEKFile == "" {
		return nil, errkind.New(errkind.InvalidArgument,
			"%s is required: a file of 32 random bytes, mode 0600, the same on every replica "+
				"(signet server kek generate /etc/signet/ca.kek)", kekField)
	}
	if st == nil {
		return nil, errkind.New(errkind.FailedPrecondition, "key manager sealed needs the server's store")
	}
	s, err := seal.LoadFile(kekField, cfg.KEKFile)
	if err != nil {
		return nil, errkind.Wrap(errkind.InvalidArgument, err, "open sealed key manager")
	}
	return open(ctx, s, st)
}

// open is New with a loaded KEK.
func open(ctx context.Context, s *seal.Sealer, st Store) (*KeyManager, error) {
	check, err := s.Seal(purposeCheck, "", []byte(checkText))
	if err != nil {
		return nil, fmt.Errorf("open sealed key manager: %w", err)
	}
	stored, err := st.EnsureCAKEK(ctx, s.KeyID(), check)
	if err != nil {
		return nil, fmt.Errorf("open sealed key manager: record the kek check value: %w", err)
	}
	pt, err := s.Open(purposeCheck, "", stored)
	if errors.Is(err, seal.ErrWrongKey) {
		return nil, errkind.New(errkind.FailedPrecondition,
			"%s: this is not the key-encryption key the store's CA keys are sealed with (store kek id %x, file kek id %s): "+
				"give every replica the same KEK file", kekField, stored[1:9], s.KeyID())
	}
	if err != nil || string(pt) != checkText {
		return nil, errkind.New(errkind.FailedPrecondition,
			"%s: the store's CA kek check value does not open under this key: the check value or the key is corrupt", kekField)
	}
	return &KeyManager{store: st, sealer: s}, nil
}

// SharedByReplicas marks the keys as readable by every replica (the
// ca.SharedKeyManager capability).
func (k *KeyManager) SharedByReplicas() {}

// GenerateKey creates a key of keyType in process, seals its PKCS #8 form
// under the KEK, bound to id, and stores it, replacing any key under id.
func (k *KeyManager) GenerateKey(ctx context.Context, id, keyType string) (crypto.Signer, error) {
	key, der, err := ca.NewPKCS8Key(id, keyType)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	sealed, err := k.sealer.Seal(purposeKey, id, der)
	if err != nil {
		return nil, fmt.Errorf("generate key %s: %w", id, err)
	}
	if err := k.store.PutCAKey(ctx, id, k.sealer.KeyID(), sealed); err != nil {
		return nil, fmt.Errorf("generate key %s: %w", id, err)
	}
	return key, nil
}

// GetKey opens the sealed key id. A missing key is NotFound; a key sealed
// under another KEK is FailedPrecondition, naming the setting.
func (k *KeyManager) GetKey(ctx context.Context, id string) (crypto.Signer, error) {
	if err := ca.CheckKeyID("get key", id); err != nil {
		return nil, err
	}
	sealed, err := k.store.CAKey(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get key %s: %w", id, err)
	}
	der, err := k.sealer.Open(purposeKey, id, sealed)
	if errors.Is(err, seal.ErrWrongKey) {
		return nil, errkind.Wrap(errkind.FailedPrecondition, err,
			fmt.Sprintf("get key %s: %s is not the key-encryption key the key was sealed with", id, kekField))
	}
	if err != nil {
		return nil, fmt.Errorf("get key %s: %w", id, err)
	}
	defer clear(der)
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("get key %s: parse pkcs8: %w", id, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("get key %s: the sealed key is a %T, which cannot sign", id, key)
	}
	return signer, nil
}

// DeleteKey removes the sealed key id; a missing key is not an error.
func (k *KeyManager) DeleteKey(ctx context.Context, id string) error {
	if err := ca.CheckKeyID("delete key", id); err != nil {
		return err
	}
	if err := k.store.DeleteCAKey(ctx, id); err != nil {
		return fmt.Errorf("delete key %s: %w", id, err)
	}
	return nil
}
