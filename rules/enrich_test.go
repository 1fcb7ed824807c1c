package rules

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const enrichSrc = `
runbook "a" {
  description = "A."
  escalate    = true
  matchers = ["alertname=\"X\""]
  query "up" {
    promql  = "up{job=\"${labels.job}\"}"
    timeout = "5s"
  }
  query "errors" {
    promql  = "rate(errors_total{job=\"${labels.job}\"}[5m])"
    timeout = "5s"
  }
  when = "len(query.up) > 0 && len(query.errors) > 0"
}

runbook "b" {
  description = "B, sharing a query with A."
  escalate    = true
  matchers = ["alertname=\"X\""]
  query "up" {
    promql  = "up{job=\"${labels.job}\"}"
    timeout = "5s"
  }
  query "slow" {
    promql  = "slow"
    timeout = "50ms"
  }
  query "logs" {
    logql = "{job=\"${labels.job}\"} |= \"error\""
    limit = 10
  }
  when = "len(query.up) > 0"
}
`

// barrierProm answers after every expected query has started, which only
// happens if they run in parallel; "slow" blocks until its context ends.
type barrierProm struct {
	expected int32
	started  atomic.Int32
	all      chan struct{}
	once     sync.Once
	mu       sync.Mutex
	seen     []string
}

func (p *barrierProm) Query(ctx context.Context, q string, _ time.Time) ([]Sample, error) {
	p.mu.Lock()
	p.seen = append(p.seen, q)
	p.mu.Unlock()
	if p.started.Add(1) == p.expected {
		p.once.Do(func() { close(p.all) })
	}
	if q == "slow" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	select {
	case <-p.all:
		return []Sample{{Value: 1}}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func TestEnrichParallelTimeoutsAndDedup(t *testing.T) {
	set := mustParse(t, enrichSrc)
	prom := &barrierProm{expected: 3, all: make(chan struct{})}
	labels := map[string]string{"alertname": "X", "job": "api"}
	cands := set.Candidates(labels)
	e := set.Enrich(context.Background(), cands, Vars{Labels: labels}, Sources{Prom: prom}, time.Now())

	if e.Queries != 4 {
		t.Fatalf("%d distinct queries, want 4 (up is shared): %q", e.Queries, prom.seen)
	}
	if got := len(prom.seen); got != 3 {
		t.Fatalf("Prometheus saw %d queries, want 3: %q", got, prom.seen)
	}
	a, b := e.Results["a"], e.Results["b"]
	if len(a.Errors) != 0 || len(a.Query["up"]) != 1 || len(a.Query["errors"]) != 1 {
		t.Fatalf("a: %+v", a)
	}
	if !strings.Contains(b.Errors["slow"], "deadline exceeded") {
		t.Fatalf("slow query: %+v", b.Errors)
	}
	if !strings.Contains(b.Errors["logs"], "no Loki configured") {
		t.Fatalf("logql without a source: %+v", b.Errors)
	}
	d := set.Decide(cands, &Env{Labels: labels}, e.Results)
	if d.Chosen == nil || d.Chosen.Name != "a" {
		t.Fatalf("decision %+v", d)
	}
	for _, o := range d.Alternatives {
		if o.Name == "b" && !strings.HasPrefix(o.Reason, "query ") {
			t.Fatalf("b's reason %q", o.Reason)
		}
	}
	if e.Duration <= 0 {
		t.Fatal("duration not recorded")
	}
}

func TestEnrichBudget(t *testing.T) {
	set := mustParse(t, strings.ReplaceAll(enrichSrc, `timeout = "5s"`, `timeout = "1h"`))
	prom := &barrierProm{expected: 99, all: make(chan struct{})} // never released
	labels := map[string]string{"alertname": "X", "job": "api"}
	e := set.Enrich(context.Background(), set.Candidates(labels), Vars{Labels: labels}, Sources{Prom: prom, Budget: 20 * time.Millisecond}, time.Now())
	for name, res := range e.Results {
		if len(res.Query) != 0 || len(res.Errors) == 0 {
			t.Fatalf("%s: results past the budget: %+v", name, res)
		}
	}
}

func TestEnrichRenderFailure(t *testing.T) {
	set := mustParse(t, enrichSrc)
	labels := map[string]string{"alertname": "X"} // no job label
	e := set.Enrich(context.Background(), set.Candidates(labels), Vars{Labels: labels}, Sources{Prom: &barrierProm{expected: 1, all: make(chan struct{})}}, time.Now())
	if !strings.Contains(e.Results["a"].Errors["up"], `no "job"`) {
		t.Fatalf("%+v", e.Results["a"].Errors)
	}
}
