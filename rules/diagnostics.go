package rules

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics prints each diagnostic as "file:line:col: severity:
// summary: detail", followed by the source line and a caret under the
// subject, in the style of compilers and promtool.
func WriteDiagnostics(w io.Writer, diags hcl.Diagnostics) {
	sources := map[string][][]byte{}
	diags = slices.Clone(diags)
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		if a.Subject == nil || b.Subject == nil {
			return cmp.Compare(boolInt(a.Subject != nil), boolInt(b.Subject != nil))
		}
		return cmp.Or(cmp.Compare(a.Subject.Filename, b.Subject.Filename),
			cmp.Compare(a.Subject.Start.Byte, b.Subject.Start.Byte))
	})
	for _, d := range diags {
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + strings.TrimSuffix(d.Detail, ".")
		}
		if d.Subject == nil {
			fmt.Fprintf(w, "%s: %s\n", sev, msg)
			continue
		}
		r := d.Subject
		fmt.Fprintf(w, "%s:%d:%d: %s: %s\n", r.Filename, r.Start.Line, r.Start.Column, sev, msg)
		lines, ok := sources[r.Filename]
		if !ok {
			if src, err := os.ReadFile(r.Filename); err == nil {
				lines = bytes.Split(src, []byte("\n"))
			}
			sources[r.Filename] = lines
		}
		if r.Start.Line < 1 || r.Start.Line > len(lines) {
			continue
		}
		line := string(lines[r.Start.Line-1])
		fmt.Fprintf(w, "  %4d | %s\n", r.Start.Line, line)
		width := 1
		if r.End.Line == r.Start.Line && r.End.Column > r.Start.Column {
			width = r.End.Column - r.Start.Column
		}
		pad := strings.Map(func(c rune) rune {
			if c == '\t' {
				return '\t'
			}
			return ' '
		}, prefixRunes(line, r.Start.Column-1))
		fmt.Fprintf(w, "       | %s%s\n", pad, strings.Repeat("^", width))
	}
}

func prefixRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
