// Package suggest finds what a user probably meant by a name that is not
// known (a config key, a flag, a JSON field), for "did you mean" hints.
package suggest

import "strings"

// Closest returns the candidate word is a likely misspelling of, or "":
// the nearest by edit distance when it is within max(2, len(word)/4)
// edits, else the one candidate that word is cut short or run on from
// (ca_bundle for ca_bundle_path), when only one is and word has at least
// four letters. Ties go to the earlier candidate.
func Closest(word string, candidates []string) string {
	best, bestDist := "", max(2, len(word)/4)+1
	for _, c := range candidates {
		if d := Distance(word, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best != "" || len(word) < 4 {
		return best
	}
	for _, c := range candidates {
		if strings.HasPrefix(c, word) || len(c) >= 4 && strings.HasPrefix(word, c) {
			if best != "" {
				return ""
			}
			best = c
		}
	}
	return best
}

// Distance is the edit distance of a and b (optimal string alignment: an
// insertion, deletion, substitution or swap of two neighbours is one edit),
// by bytes, which is what names made of ASCII need.
func Distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
