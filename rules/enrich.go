package rules

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// PromQuerier runs a PromQL instant query. engine/ provides the real one,
// through the Prometheus HTTP API.
type PromQuerier interface {
	Query(ctx context.Context, promql string, at time.Time) ([]Sample, error)
}

// LogQuerier runs a LogQL range query and returns at most limit lines.
type LogQuerier interface {
	QueryRange(ctx context.Context, logql string, start, end time.Time, limit int) ([]LogLine, error)
}

// ToolRunner runs a read-only tool and returns its decoded JSON output.
type ToolRunner interface {
	RunQuery(ctx context.Context, call PlannedCall) (any, error)
}

// Sources are the clients enrichment queries go through. A nil source makes
// the queries of its kind fail, so their runbooks do not match.
type Sources struct {
	Prom  PromQuerier
	Logs  LogQuerier
	Tools ToolRunner
	// Budget bounds the whole enrichment; each query also has its own
	// timeout.
	Budget time.Duration
}

// DefaultEnrichBudget bounds one alert's enrichment when Sources sets none.
const DefaultEnrichBudget = 10 * time.Second

// Enrichment is what the queries of the candidate runbooks returned.
type Enrichment struct {
	// Results by runbook name.
	Results map[string]*Results
	// Queries is the number of distinct queries run; identical rendered
	// PromQL across runbooks runs once.
	Queries  int
	Duration time.Duration
}

// Enrich runs every query of the candidates in parallel, each under its
// timeout and all under the budget, and records how long it took. A query
// that fails, times out or cannot render is recorded as an error for its
// runbook, never as an empty result.
func (s *Set) Enrich(ctx context.Context, cands []*Runbook, v Vars, src Sources, now time.Time) *Enrichment {
	start := time.Now()
	budget := src.Budget
	if budget <= 0 {
		budget = DefaultEnrichBudget
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()

	type job struct {
		key  string
		run  func(context.Context) (any, error)
		wait time.Duration
	}
	type use struct {
		runbook, query string
		kind           QueryKind
		key            string
	}
	jobs := map[string]*job{}
	var uses []use
	out := &Enrichment{Results: map[string]*Results{}}
	for _, rb := range cands {
		res := &Results{Query: map[string][]Sample{}, Logs: map[string][]LogLine{}, Tool: map[string]any{}, Errors: map[string]string{}}
		out.Results[rb.Name] = res
		for _, q := range rb.Queries {
			var key string
			var run func(context.Context) (any, error)
			switch q.Kind {
			case QueryPromQL:
				text, err := q.Expr.RenderQuery(v)
				if err != nil {
					res.Errors[q.Name] = err.Error()
					continue
				}
				key = "promql\x00" + text
				run = func(ctx context.Context) (any, error) {
					if src.Prom == nil {
						return nil, errors.New("no Prometheus configured")
					}
					return src.Prom.Query(ctx, text, now)
				}
			case QueryLogQL:
				text, err := q.Expr.RenderQuery(v)
				if err != nil {
					res.Errors[q.Name] = err.Error()
					continue
				}
				key = fmt.Sprintf("logql\x00%s\x00%d\x00%d", text, q.Limit, q.Range)
				limit, rng := q.Limit, q.Range
				run = func(ctx context.Context) (any, error) {
					if src.Logs == nil {
						return nil, errors.New("no Loki configured")
					}
					return src.Logs.QueryRange(ctx, text, now.Add(-rng), now, limit)
				}
			case QueryTool:
				call, err := s.renderCall(q.Call, &v)
				if err != nil {
					res.Errors[q.Name] = err.Error()
					continue
				}
				key = rb.Name + "\x00tool\x00" + q.Name
				run = func(ctx context.Context) (any, error) {
					if src.Tools == nil {
						return nil, errors.New("no tool runner configured")
					}
					return src.Tools.RunQuery(ctx, call)
				}
			}
			if j, ok := jobs[key]; !ok {
				jobs[key] = &job{key: key, run: run, wait: q.Timeout}
			} else if q.Timeout > j.wait {
				j.wait = q.Timeout
			}
			uses = append(uses, use{runbook: rb.Name, query: q.Name, kind: q.Kind, key: key})
		}
	}

	type result struct {
		val any
		err error
	}
	results := make(map[string]result, len(jobs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qctx, cancel := context.WithTimeout(ctx, j.wait)
			defer cancel()
			val, err := j.run(qctx)
			if err == nil && qctx.Err() != nil {
				err = qctx.Err()
			}
			mu.Lock()
			results[j.key] = result{val, err}
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.Queries = len(jobs)
	for _, u := range uses {
		r := results[u.key]
		res := out.Results[u.runbook]
		if r.err != nil {
			res.Errors[u.query] = r.err.Error()
			continue
		}
		switch u.kind {
		case QueryPromQL:
			res.Query[u.query], _ = r.val.([]Sample)
		case QueryLogQL:
			res.Logs[u.query], _ = r.val.([]LogLine)
		case QueryTool:
			res.Tool[u.query] = r.val
		}
	}
	out.Duration = time.Since(start)
	return out
}
