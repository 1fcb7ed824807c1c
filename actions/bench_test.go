package actions

import (
	"context"
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
