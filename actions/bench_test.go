package actions

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkPolicy is one call through the prepared default policy.
func BenchmarkPolicy(b *testing.B) {
	g, err := NewGate(context.Background(), "")
	if err != nil {
		b.Fatal(err)
	}
	in := base()
	in.Call.Risk = "medium"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, _ := g.Evaluate(ctx, in, noon); d.Result != Allow {
			b.Fatal(d)
		}
	}
}

// BenchmarkPolicyFloor is the same call through a policy that only
// returns a constant decision: what OPA's evaluation costs by itself here,
// the floor under any policy.
func BenchmarkPolicyFloor(b *testing.B) {
	p := filepath.Join(b.TempDir(), "floor.rego")
	src := "package medic.policy\n\nimport rego.v1\n\ndecision := {\"result\": \"allow\", \"reasons\": [\"constant\"]}\n"
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		b.Fatal(err)
	}
	g, err := NewGate(context.Background(), p)
	if err != nil {
		b.Fatal(err)
	}
	in := base()
	in.Call.Risk = "medium"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, _ := g.Evaluate(ctx, in, noon); d.Result != Allow {
			b.Fatal(d)
		}
	}
}
