package rules

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// maxNodes bounds the size of one condition, so that a runaway expression is
// a load error rather than a slow match.
const maxNodes = 2000

type condKind int

const (
	condBool condKind = iota
	condFloat
)

// declared lists the query names a runbook declares, by env root.
type declared map[string]map[string]bool

// compileCondition compiles an attribute holding an expr program. The value
// is read with no EvalContext, so a `${` in it (HCL interpolation) is an
// error that points at it; `$${` writes a literal. A number literal is
// accepted where a float is wanted. Errors point at the line and column
// inside the string.
func compileCondition(attr *hcl.Attribute, src []byte, kind condKind, env any, decl declared) (*Condition, hcl.Diagnostics) {
	v, diags := attr.Expr.Value(nil)
	if diags.HasErrors() {
		for _, d := range diags {
			if d.Summary == "Variables not allowed" {
				d.Detail += " Conditions are expr programs, not templates: write labels.name, not ${labels.name}; use $${ for a literal \"${\"."
			}
		}
		return nil, diags
	}
	var source string
	switch {
	case v.IsNull():
		return nil, hcl.Diagnostics{attrDiag(attr, "Invalid condition", "The condition must be a string holding an expr program.")}
	case v.Type() == cty.String:
		source = v.AsString()
	case v.Type() == cty.Number && kind == condFloat:
		f, _ := v.AsBigFloat().Float64()
		source = fmt.Sprint(f)
	default:
		return nil, hcl.Diagnostics{attrDiag(attr, "Invalid condition", "The condition must be a string holding an expr program.")}
	}
	opts := []expr.Option{expr.Env(env), expr.MaxNodes(maxNodes)}
	if kind == condBool {
		opts = append(opts, expr.AsBool())
	} else {
		opts = append(opts, expr.AsFloat64())
	}
	// After AsBool or AsFloat64: an expression whose type is only known at
	// run time (any) is an error, not a surprise.
	opts = append(opts, expr.WarnOnAny())
	prog, err := expr.Compile(source, opts...)
	if err != nil {
		msg, from := err.Error(), -1
		var fe *file.Error
		if errors.As(err, &fe) {
			msg, from = fe.Message, fe.From
		}
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid expression",
			Detail:   msg + ".",
			Subject:  exprRange(attr, src, from).Ptr(),
		}}
	}
	var unknown []*hcl.Diagnostic
	node := prog.Node()
	ast.Walk(&node, visitor(func(n *ast.Node) {
		m, ok := (*n).(*ast.MemberNode)
		if !ok {
			return
		}
		id, ok := m.Node.(*ast.IdentifierNode)
		if !ok {
			return
		}
		names, ok := decl[id.Value]
		if !ok {
			return
		}
		prop, ok := m.Property.(*ast.StringNode)
		if !ok || names[prop.Value] {
			return
		}
		unknown = append(unknown, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Unknown query",
			Detail:   fmt.Sprintf("%s.%s is not a query of this runbook; declared: %s.", id.Value, prop.Value, listNames(names)),
			Subject:  exprRange(attr, src, m.Location().From).Ptr(),
		})
	}))
	if len(unknown) > 0 {
		return nil, unknown
	}
	return &Condition{Source: source, Program: prog, Range: attr.Expr.Range()}, nil
}

type visitor func(*ast.Node)

func (v visitor) Visit(n *ast.Node) { v(n) }

// exprRange maps a rune offset inside a quoted HCL string to its range in
// the file, walking the escapes of the source so that the column is exact.
// An offset below 0, or a value that is not a one-line quoted string, gives
// the attribute's value range.
func exprRange(attr *hcl.Attribute, src []byte, from int) hcl.Range {
	rng := attr.Expr.Range()
	if from < 0 || rng.End.Byte > len(src) || rng.Start.Line != rng.End.Line ||
		rng.End.Byte-rng.Start.Byte < 2 || src[rng.Start.Byte] != '"' {
		return rng
	}
	raw := src[rng.Start.Byte+1 : rng.End.Byte-1]
	i, col := 0, rng.Start.Column+1
	for r := 0; r < from && i < len(raw); r++ {
		n := escapeLen(raw[i:])
		col += utf8.RuneCount(raw[i : i+n])
		i += n
	}
	pos := hcl.Pos{Line: rng.Start.Line, Column: col, Byte: rng.Start.Byte + 1 + i}
	end := pos
	if i < len(raw) {
		_, w := utf8.DecodeRune(raw[i:])
		end.Byte += w
		end.Column++
	}
	return hcl.Range{Filename: rng.Filename, Start: pos, End: end}
}

// escapeLen is the length in source bytes of the decoded rune at the start
// of raw: an escape sequence, a doubled template marker, or one UTF-8 rune.
func escapeLen(raw []byte) int {
	if len(raw) >= 2 && raw[0] == '\\' {
		switch raw[1] {
		case 'u':
			return min(6, len(raw))
		case 'U':
			return min(10, len(raw))
		}
		return 2
	}
	if len(raw) >= 3 && (raw[0] == '$' || raw[0] == '%') && raw[1] == raw[0] && raw[2] == '{' {
		// $${ decodes to ${: the first rune ($) takes two source bytes.
		return 2
	}
	_, w := utf8.DecodeRune(raw)
	return w
}

func attrDiag(attr *hcl.Attribute, summary, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: attr.Expr.Range().Ptr()}
}
