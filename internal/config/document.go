package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// ReadFile reads a configuration file of at most maxFileSize bytes. what
// names the file in errors ("config", "helper config").
func ReadFile(what, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s %s is larger than %d bytes", what, path, maxFileSize)
	}
	return data, nil
}

// DecodeDocument strictly decodes a whole file holding one YAML mapping
// into v with DecodeNode: unknown keys name their line and the accepted
// keys, and every invalid field is reported at once by its key path
// ("x509.dir"). empty says what to set when the file is empty; keys lists
// the top-level keys for a file that is not a mapping.
func DecodeDocument(data []byte, v any, empty, keys string) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty configuration: " + empty)
		}
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document: a config file holds exactly one")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: the configuration must be a mapping of keys (%s)", root.Line, keys)
	}
	if err := DecodeNode("", root, v); err != nil {
		return topLevel(err)
	}
	return nil
}

// topLevel rewrites DecodeNode's field paths for a whole file: "x509.dir",
// not ".x509.dir".
func topLevel(err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		l = strings.TrimPrefix(l, ": ")
		if head, rest, ok := strings.Cut(l, ": ."); ok && strings.HasPrefix(head, "line ") {
			l = head + ": " + rest
		}
		lines[i] = strings.TrimPrefix(l, ".")
	}
	return errors.New(strings.Join(lines, "\n"))
}
