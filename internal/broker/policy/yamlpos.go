package policy

import (
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// yamlPosition maps a position in the value of the scalar node n (line
// 1-based, col 0-based in code points, as cel-go reports them) to the line
// and 1-based column in the YAML document whose lines are lines. Block
// scalars (| and >), folded plain scalars and single-line quoted scalars are
// mapped exactly; escapes inside quoted scalars may shift the column.
func yamlPosition(n *yaml.Node, line, col int, lines []string) (int, int) {
	// The offset, in code points, of the position in the value.
	offset := 0
	for i, l := range strings.Split(n.Value, "\n") {
		if i+1 == line {
			offset += col
			break
		}
		offset += utf8.RuneCountInString(l) + 1
	}
	type segment struct {
		line, col int // 1-based line and column of the segment's first code point
		text      string
		blank     bool
	}
	var segs []segment
	literal := n.Style&yaml.LiteralStyle != 0
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		indent := -1
		for i := n.Line; i < len(lines); i++ { // lines[n.Line] is the line after the indicator
			l := strings.TrimRight(lines[i], "\r")
			trimmed := strings.TrimLeft(l, " ")
			if trimmed == "" {
				segs = append(segs, segment{line: i + 1, blank: true})
				continue
			}
			ind := len(l) - len(trimmed)
			if indent < 0 {
				indent = ind
			}
			if ind < indent {
				break
			}
			segs = append(segs, segment{line: i + 1, col: indent + 1, text: l[indent:]})
		}
	} else {
		if n.Line < 1 || n.Line > len(lines) {
			return n.Line, n.Column
		}
		start := n.Column - 1
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			start++
		}
		first := strings.TrimRight(lines[n.Line-1], "\r")
		if start > len(first) {
			start = len(first)
		}
		segs = append(segs, segment{line: n.Line, col: start + 1, text: first[start:]})
		for i := n.Line; i < len(lines); i++ {
			l := strings.TrimRight(lines[i], "\r")
			trimmed := strings.TrimLeft(l, " \t")
			if trimmed == "" {
				segs = append(segs, segment{line: i + 1, blank: true})
				continue
			}
			segs = append(segs, segment{line: i + 1, col: len(l) - len(trimmed) + 1, text: trimmed})
		}
	}
	pos := 0
	prevBlank := true
	endLine, endCol := n.Line, n.Column
	for i, s := range segs {
		if i > 0 {
			switch {
			case literal:
				pos++
			case s.blank:
				pos++
			case !prevBlank:
				pos++
			}
		}
		prevBlank = s.blank
		if s.blank {
			continue
		}
		n := utf8.RuneCountInString(s.text)
		if offset < pos+n {
			return s.line, s.col + colBytes(s.text, offset-pos)
		}
		pos += n
		endLine, endCol = s.line, s.col+len(s.text)
	}
	return endLine, endCol // the position is at the end of the value
}

// colBytes converts a code point count into a byte count within s.
func colBytes(s string, runes int) int {
	if runes <= 0 {
		return 0
	}
	i := 0
	for j := range s {
		if i == runes {
			return j
		}
		i++
	}
	return len(s)
}
