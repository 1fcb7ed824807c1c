package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"

	"medic/actions"
	"medic/rules"
)

// SourceConfig is where an enrichment client connects.
type SourceConfig struct {
	URL string
	// HTTPConfigFile is a Prometheus HTTP client config (authorization,
	// basic_auth, tls_config, proxy_url).
	HTTPConfigFile string
}

func (c SourceConfig) roundTripper() (http.RoundTripper, error) {
	hc := promconfig.DefaultHTTPClientConfig
	if c.HTTPConfigFile != "" {
		loaded, _, err := promconfig.LoadHTTPConfigFile(c.HTTPConfigFile)
		if err != nil {
			return nil, fmt.Errorf("http config file %s: %w", c.HTTPConfigFile, err)
		}
		hc = *loaded
	}
	return promconfig.NewRoundTripperFromConfig(hc, "medic", promconfig.WithUserAgent(version.ComponentUserAgent("medic")))
}

// NewSilencer connects silence tools to the Alertmanager at c.URL.
func NewSilencer(c SourceConfig) (*actions.Silencer, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("alertmanager url: %w", err)
	}
	rt, err := c.roundTripper()
	if err != nil {
		return nil, err
	}
	return actions.NewSilencer(u, &http.Client{Transport: rt}), nil
}

// PromClient runs enrichment and verification queries through the
// Prometheus HTTP API (client_golang's api/prometheus/v1).
type PromClient struct {
	api v1.API
}

// NewPromClient connects to the Prometheus at c.URL.
func NewPromClient(c SourceConfig) (*PromClient, error) {
	rt, err := c.roundTripper()
	if err != nil {
		return nil, err
	}
	client, err := api.NewClient(api.Config{Address: c.URL, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("prometheus client: %w", err)
	}
	return &PromClient{api: v1.NewAPI(client)}, nil
}

// Query runs an instant query. A vector gives one sample per series, a
// scalar one sample without labels; NaN values are dropped, as they carry no
// evidence; a matrix or a string is an error.
func (c *PromClient) Query(ctx context.Context, q string, at time.Time) ([]rules.Sample, error) {
	val, _, _, err := c.api.Query(ctx, q, at)
	if err != nil {
		return nil, fmt.Errorf("prometheus query: %w", err)
	}
	switch v := val.(type) {
	case model.Vector:
		out := make([]rules.Sample, 0, len(v))
		for _, s := range v {
			f := float64(s.Value)
			if math.IsNaN(f) {
				continue
			}
			labels := make(map[string]string, len(s.Metric))
			for k, lv := range s.Metric {
				labels[string(k)] = string(lv)
			}
			out = append(out, rules.Sample{Labels: labels, Value: f})
		}
		return out, nil
	case *model.Scalar:
		if math.IsNaN(float64(v.Value)) {
			return []rules.Sample{}, nil
		}
		return []rules.Sample{{Labels: map[string]string{}, Value: float64(v.Value)}}, nil
	default:
		return nil, fmt.Errorf("prometheus query: result type %s, want a vector or a scalar", val.Type())
	}
}

// LokiClient runs LogQL range queries through Loki's documented HTTP API,
// GET /loki/api/v1/query_range.
type LokiClient struct {
	base   *url.URL
	client *http.Client
}

// NewLokiClient connects to the Loki at c.URL.
func NewLokiClient(c SourceConfig) (*LokiClient, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("loki url %q is not an http(s) URL", c.URL)
	}
	rt, err := c.roundTripper()
	if err != nil {
		return nil, err
	}
	return &LokiClient{base: u, client: &http.Client{Transport: rt}}, nil
}

// maxLokiBody bounds the response read from Loki.
const maxLokiBody = 32 << 20

type lokiResponse struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Stream map[string]string `json:"stream"`
			Values [][2]string       `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

// QueryRange returns at most limit lines, lines that look like errors first,
// then the newest first.
func (c *LokiClient) QueryRange(ctx context.Context, q string, start, end time.Time, limit int) ([]rules.LogLine, error) {
	u := c.base.JoinPath("loki/api/v1/query_range")
	u.RawQuery = url.Values{
		"query":     {q},
		"start":     {strconv.FormatInt(start.UnixNano(), 10)},
		"end":       {strconv.FormatInt(end.UnixNano(), 10)},
		"limit":     {strconv.Itoa(limit)},
		"direction": {"backward"},
	}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("loki query: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxLokiBody))
	if err != nil {
		return nil, fmt.Errorf("loki query: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loki query: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var lr lokiResponse
	if err := json.Unmarshal(body, &lr); err != nil {
		return nil, fmt.Errorf("loki query: decoding the response: %w", err)
	}
	if lr.Status != "success" {
		return nil, fmt.Errorf("loki query: %s", lr.Error)
	}
	if lr.Data.ResultType != "streams" {
		return nil, fmt.Errorf("loki query: result type %q, want streams (a log query, not a metric query)", lr.Data.ResultType)
	}
	var lines []rules.LogLine
	for _, s := range lr.Data.Result {
		for _, v := range s.Values {
			ns, err := strconv.ParseInt(v[0], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("loki query: timestamp %q: %w", v[0], err)
			}
			lines = append(lines, rules.LogLine{Labels: s.Stream, Time: time.Unix(0, ns).UTC(), Line: v[1]})
		}
	}
	slices.SortStableFunc(lines, func(a, b rules.LogLine) int {
		if ea, eb := looksLikeError(a.Line), looksLikeError(b.Line); ea != eb {
			if ea {
				return -1
			}
			return 1
		}
		return b.Time.Compare(a.Time)
	})
	if len(lines) > limit {
		lines = lines[:limit]
	}
	return lines, nil
}

var errorWords = []string{"error", "panic", "fatal", "exception", "traceback", "level=err", "oomkilled"}

func looksLikeError(line string) bool {
	l := strings.ToLower(line)
	for _, w := range errorWords {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}
