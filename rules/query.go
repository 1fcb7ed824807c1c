package rules

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// RenderQuery renders a PromQL or LogQL template with every interpolated
// value escaped for the place it lands in, the way html/template escapes by
// context: inside a "…" or '…' string literal a value is escaped as that
// literal's contents, so a label value such as `x"} or vector(1) or {a="`
// stays one string; inside a `…` raw string, or a # comment, a value that
// would end it is refused; outside a literal a value must be a plain token
// (a number, a duration, a metric or label name), or the render fails and
// the query does not run. The literal text of the template is the author's
// and is kept as written. Both languages share these lexical rules.
func (t *Template) RenderQuery(v Vars) (string, error) {
	var b strings.Builder
	var lx queryLexer
	put := func(r hcl.Range, val string) error {
		if err := lx.escape(&b, val); err != nil {
			return fmt.Errorf("render %s: %w", r, err)
		}
		return nil
	}
	if t.isFast {
		for i := range t.fast {
			p := &t.fast[i]
			s, err := t.lookup(p, &v)
			if err != nil {
				return "", err
			}
			if p.root == "" {
				lx.literal(&b, s)
			} else if err := put(t.Range, s); err != nil {
				return "", err
			}
		}
		return b.String(), nil
	}
	var parts []hclsyntax.Expression
	switch e := t.Expr.(type) {
	case *hclsyntax.TemplateExpr:
		parts = e.Parts
	case *hclsyntax.TemplateWrapExpr:
		parts = []hclsyntax.Expression{e.Wrapped}
	default:
		return "", fmt.Errorf("render %s: a query must be a template string", t.Range)
	}
	ctx := evalContext(v)
	for _, p := range parts {
		if lit, ok := p.(*hclsyntax.LiteralValueExpr); ok && lit.Val.Type() == cty.String && !lit.Val.IsNull() {
			lx.literal(&b, lit.Val.AsString())
			continue
		}
		val, diags := p.Value(ctx)
		if diags.HasErrors() {
			return "", fmt.Errorf("render %s: %s", t.Range, diagsText(diags))
		}
		if val.IsNull() || !val.IsKnown() {
			return "", fmt.Errorf("render %s: no value", p.Range())
		}
		s, err := convert.Convert(val, cty.String)
		if err != nil {
			return "", fmt.Errorf("render %s: %v", p.Range(), err)
		}
		if err := put(p.Range(), s.AsString()); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// queryLexer follows where the template's own text stands in PromQL or
// LogQL: in code, in a string literal opened by quote, or in a comment.
type queryLexer struct {
	quote   byte // '"', '\'', '`', '#' for a comment, 0 in code
	escaped bool // the previous byte was a backslash inside "…" or '…'
}

// literal writes the author's text and follows its lexical state.
func (lx *queryLexer) literal(b *strings.Builder, s string) {
	b.WriteString(s)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case lx.escaped:
			lx.escaped = false
		case lx.quote == 0:
			if c == '"' || c == '\'' || c == '`' || c == '#' {
				lx.quote = c
			}
		case lx.quote == '#':
			if c == '\n' {
				lx.quote = 0
			}
		case c == '\\' && lx.quote != '`':
			lx.escaped = true
		case c == lx.quote:
			lx.quote = 0
		}
	}
}

// plainToken is what a value may be outside a string literal.
var plainToken = regexp.MustCompile(`^-?[A-Za-z0-9_:.]+$`)

// escape writes a value as data in the current lexical state.
func (lx *queryLexer) escape(b *strings.Builder, v string) error {
	if lx.escaped {
		// The template's own backslash would swallow the value's first
		// character; no honest template does that.
		return fmt.Errorf("a value follows a backslash in a string literal")
	}
	switch lx.quote {
	case 0:
		if !plainToken.MatchString(v) {
			return fmt.Errorf("the value %s stands outside a string literal of the query; only a number, a duration or a name may, so quote it, as in job=\"${labels.job}\"", Quote(v))
		}
		b.WriteString(v)
	case '`':
		if strings.ContainsRune(v, '`') {
			return fmt.Errorf("the value %s would end a `raw string` of the query; use a \"quoted\" one", Quote(v))
		}
		b.WriteString(v)
	case '#':
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("the value %s would end a comment of the query", Quote(v))
		}
		b.WriteString(v)
	default:
		quoteInto(b, v, lx.quote)
	}
	return nil
}

// quoteInto writes s as the contents of a string literal closed by quote,
// with Go's escapes, which PromQL and LogQL both unquote; a byte that is
// not UTF-8 stays that byte.
func quoteInto(b *strings.Builder, s string, quote byte) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(b, `\x%02x`, s[i-1])
		case r == '\\' || r == rune(quote):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
}
