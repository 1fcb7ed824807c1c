package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"medic/rules"
)

// SeriesFile answers PromQL queries from a JSON file instead of a
// Prometheus: an object whose keys are the exact query texts (as rendered)
// and whose values are lists of {"labels": {...}, "value": n}. A query the
// file does not hold is an error, so its runbook does not match. `medic
// replay --series` uses it.
type SeriesFile struct {
	series map[string][]rules.Sample
	// what names the source in errors.
	what string
}

// LoadSeriesFile reads a series file.
func LoadSeriesFile(path string) (*SeriesFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("series file: %w", err)
	}
	var m map[string][]rules.Sample
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("series file %s: %w", path, err)
	}
	return &SeriesFile{series: m, what: "the series file " + path}, nil
}

// Query returns the samples stored for q.
func (s *SeriesFile) Query(_ context.Context, q string, _ time.Time) ([]rules.Sample, error) {
	samples, ok := s.series[q]
	if !ok {
		return nil, fmt.Errorf("%s has no result for %q", s.what, q)
	}
	return samples, nil
}
