package rules

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Variable is a runbook-library setting that the operator may override
// from the config without editing the runbooks, as Terraform's and
// Packer's input variables are: a window, a threshold, a path. Runbook
// templates read it as ${var.name}. Its value is a string; in a query it
// is escaped like any other value, so outside a string literal it must be
// a plain token such as "2m" or "100".
type Variable struct {
	Name        string
	Description string
	Default     string

	DefRange hcl.Range
}

var variableSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "description", Required: true}, {Name: "default", Required: true},
}}

func (l *loader) variable(b *hcl.Block) hcl.Diagnostics {
	name := b.Labels[0]
	content, diags := b.Body.Content(variableSchema)
	if prev, dup := l.set.Variables[name]; dup {
		return append(diags, duplicate("variable", name, prev.DefRange, b.DefRange))
	}
	a := &attrs{m: content.Attributes}
	v := &Variable{Name: name, Description: a.str("description", ""), Default: a.str("default", ""), DefRange: b.DefRange}
	diags = append(diags, a.diags...)
	l.set.Variables[name] = v
	l.set.Var[name] = v.Default
	l.varNames[name] = true
	return diags
}

// withVars adds the declared variables to a template scope. Variables are
// all decoded before any template is checked.
func (l *loader) withVars(sc scope) scope {
	roots := make(map[string]cty.Type, len(sc.roots)+1)
	for k, v := range sc.roots {
		roots[k] = v
	}
	roots["var"] = cty.Map(cty.String)
	attrs := make(map[string]map[string]bool, len(sc.attrs)+1)
	for k, v := range sc.attrs {
		attrs[k] = v
	}
	attrs["var"] = l.varNames
	return scope{roots: roots, attrs: attrs, what: sc.what}
}

// Override sets variables from the config, before the Set is used. Every
// name must be declared; an unknown one is an error, as a typo would
// otherwise leave the default in force unnoticed.
func (s *Set) Override(values map[string]string) error {
	var unknown []string
	for name := range values {
		if _, ok := s.Variables[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		declared := make(map[string]bool, len(s.Variables))
		for name := range s.Variables {
			declared[name] = true
		}
		return fmt.Errorf("no runbook file declares variable %s; declared: %s", strings.Join(unknown, ", "), listNames(declared))
	}
	for name, v := range values {
		s.Var[name] = v
	}
	return nil
}
