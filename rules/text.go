package rules

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// IsControl reports whether r is a character medic refuses in label values
// and arguments: C0 and C1 controls, DEL, the line and paragraph separators,
// and every format character (Unicode category Cf): the bidirectional
// controls that make text read differently from what it is, and the
// invisible ones (zero-width spaces and joiners, the byte order mark, the
// soft hyphen, the tag characters that can hide text from a human while a
// model still reads it). The intake applies the same classes.
func IsControl(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x2028, r == 0x2029:
		return true
	}
	return unicode.Is(unicode.Cf, r)
}

// IsLabelName reports whether s is a valid Prometheus label name.
func IsLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// Quote renders an untrusted value for an error message: quoted, escaped,
// and cut on a rune boundary to a readable length.
func Quote(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q…", s[:cut])
	}
	return strings.ToValidUTF8(fmt.Sprintf("%q", s), "\uFFFD")
}
