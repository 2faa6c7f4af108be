package credential

import (
	"bytes"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxYAMLDocs bounds the documents read from one YAML stream.
const maxYAMLDocs = 64

// decodeYAML parses every document of a YAML stream into nodes. It returns
// the documents decoded before the first error, and recovers from parser
// panics so that hostile input cannot stop a scan.
func decodeYAML(content []byte) (docs []*yaml.Node) {
	defer func() {
		if recover() != nil {
			docs = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(content))
	for len(docs) < maxYAMLDocs {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			break // io.EOF or a syntax error: keep what was decoded
		}
		if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
			docs = append(docs, doc.Content[0])
		}
	}
	return docs
}

// mapGet returns the value of key in a mapping node, or nil.
func mapGet(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// mapEach calls fn for each key/value pair of a mapping node whose key is a
// scalar.
func mapEach(n *yaml.Node, fn func(key string, k, v *yaml.Node)) {
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode {
			fn(k.Value, k, n.Content[i+1])
		}
	}
}

// seqEach calls fn for each item of a sequence node.
func seqEach(n *yaml.Node, fn func(item *yaml.Node)) {
	if n == nil || n.Kind != yaml.SequenceNode {
		return
	}
	for _, item := range n.Content {
		fn(item)
	}
}

// stringScalar returns the value of a scalar node tagged !!str.
func stringScalar(n *yaml.Node) (string, bool) {
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return "", false
	}
	return n.Value, true
}

// lineIndex maps 1-based line numbers to byte offsets of content.
type lineIndex []int

func newLineIndex(content []byte) lineIndex {
	idx := lineIndex{0}
	for off := 0; ; {
		i := bytes.IndexByte(content[off:], '\n')
		if i < 0 {
			return idx
		}
		off += i + 1
		idx = append(idx, off)
	}
}

// nodeSpan locates the text of a scalar node's value in content. It tries
// the node's position (plain and quoted scalars), then searches the first
// line of the value from there, and falls back to the node's whole line.
func nodeSpan(content []byte, lines lineIndex, n *yaml.Node) (int, int) {
	if n.Line < 1 || n.Line > len(lines) {
		return 0, 0
	}
	lineStart := lines[n.Line-1]
	lineEnd := len(content)
	if n.Line < len(lines) {
		lineEnd = lines[n.Line] - 1
	}
	at := min(lineStart+max(n.Column-1, 0), len(content))
	v := []byte(n.Value)
	if bytes.HasPrefix(content[at:], v) {
		return at, at + len(v)
	}
	if at < len(content) && (content[at] == '"' || content[at] == '\'') && bytes.HasPrefix(content[at+1:], v) {
		return at + 1, at + 1 + len(v)
	}
	first, _, _ := strings.Cut(n.Value, "\n")
	if first != "" {
		window := content[at:min(len(content), at+len(n.Value)+64<<10)]
		if i := bytes.Index(window, []byte(first)); i >= 0 {
			return at + i, at + i + len(first)
		}
	}
	return lineStart, max(lineEnd, lineStart)
}
