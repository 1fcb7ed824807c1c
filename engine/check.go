package engine

import (
	"context"
	"errors"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"

	"medic/actions"
	"medic/rules"
)

// CheckResult is what `medic check` found in one file.
type CheckResult struct {
	File string `json:"file"`
	// Kind is "config" for a medic.hcl, "runbooks" for a runbook file.
	Kind     string          `json:"kind"`
	Tools    int             `json:"tools"`
	Runbooks int             `json:"runbooks"`
	Diags    hcl.Diagnostics `json:"-"`
}

// configSchema tells a medic.hcl from a runbook file: any of these at the
// top level makes it a config.
var configSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "runbooks"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "web"}, {Type: "storage"}, {Type: "intake"}},
}

// Check validates each file: a medic.hcl with the runbook files it names, or
// a runbook file on its own. It collects every diagnostic of every file.
func Check(paths []string) []CheckResult {
	out := make([]CheckResult, 0, len(paths))
	for _, p := range paths {
		r := CheckResult{File: p, Kind: "runbooks"}
		src, err := os.ReadFile(p)
		if err != nil {
			r.Diags = hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read file", Detail: err.Error()}}
			out = append(out, r)
			continue
		}
		f, diags := hclparse.NewParser().ParseHCL(src, p)
		if diags.HasErrors() {
			r.Diags = diags
			out = append(out, r)
			continue
		}
		content, _, _ := f.Body.PartialContent(configSchema)
		files := []string{p}
		var cfg *Config
		if len(content.Attributes) > 0 || len(content.Blocks) > 0 {
			r.Kind = "config"
			var d hcl.Diagnostics
			cfg, d = ParseConfig(p, src)
			r.Diags = append(r.Diags, d...)
			if cfg == nil {
				out = append(out, r)
				continue
			}
			files = cfg.Runbooks
			if cfg.Policy != "" {
				r.Diags = append(r.Diags, checkPolicy(cfg.Policy)...)
			}
		}
		set, d := rules.Load(files...)
		r.Diags = append(r.Diags, d...)
		if set != nil {
			r.Tools, r.Runbooks = len(set.Tools), len(set.Runbooks)
			if cfg != nil {
				r.Diags = append(r.Diags, overrideVariables(cfg, set)...)
				r.Diags = append(r.Diags, checkNotifyTools(cfg, set)...)
			}
		}
		out = append(out, r)
	}
	return out
}

// overrideVariables gives the config's variables to the runbooks; a name
// no runbook file declares is an error at the config's variables.
func overrideVariables(cfg *Config, set *rules.Set) hcl.Diagnostics {
	if err := set.Override(cfg.Variables); err != nil {
		return hcl.Diagnostics{attrError(cfg.VariablesRange, "Unknown variable", err.Error()+".")}
	}
	return nil
}

// checkPolicy compiles a policy file and reports its errors at
// file:row:col.
func checkPolicy(path string) hcl.Diagnostics {
	src, err := os.ReadFile(path)
	if err != nil {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read policy", Detail: err.Error()}}
	}
	if _, err := actions.Prepare(context.Background(), path, string(src)); err != nil {
		return policyDiags(path, err)
	}
	return nil
}

// policyDiags turns a policy's compile errors into diagnostics at
// file:row:col.
func policyDiags(path string, err error) hcl.Diagnostics {
	var pe *actions.PolicyError
	if !errors.As(err, &pe) {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid policy", Detail: err.Error()}}
	}
	var diags hcl.Diagnostics
	for _, p := range pe.Errors {
		pos := hcl.Pos{Line: p.Row, Column: p.Col}
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid policy", Detail: p.Message,
			Subject: &hcl.Range{Filename: path, Start: pos, End: pos}})
	}
	return diags
}
