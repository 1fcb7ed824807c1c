package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"medic/rules"
)

// SeriesFile answers PromQL queries from a JSON file instead of a
// Prometheus. The file holds an object with two optional keys: "queries",
// results by runbook query name, and "series", results by the exact query
// text as rendered; each result is a list of {"labels": {...}, "value": n}.
// A query the file does not hold is an error, so its runbook does not
// match. `medic replay --series` uses it.
type SeriesFile struct {
	series map[string][]rules.Sample
	// Queries are the results by query name, for Decider.QueryStubs.
	Queries map[string][]rules.Sample
	// what names the source in errors.
	what string
}

// LoadSeriesFile reads a series file.
func LoadSeriesFile(path string) (*SeriesFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("series file: %w", err)
	}
	var f struct {
		Queries map[string][]rules.Sample `json:"queries"`
		Series  map[string][]rules.Sample `json:"series"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("series file %s: %w", path, err)
	}
	if f.Series == nil {
		f.Series = map[string][]rules.Sample{}
	}
	return &SeriesFile{series: f.Series, Queries: f.Queries, what: "the series file " + path}, nil
}

// Query returns the samples stored for q.
func (s *SeriesFile) Query(_ context.Context, q string, _ time.Time) ([]rules.Sample, error) {
	samples, ok := s.series[q]
	if !ok {
		return nil, fmt.Errorf("%s has no result for %q", s.what, q)
	}
	return samples, nil
}
