package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The scale-out scenarios: a service that runs as systemd template
// instances (JOB@1.service, JOB@2.service) behind a load balancer, each
// instance serving one request at a time with a bounded queue, and a
// downstream they all call. The lab's faults are in the downstream: slow
// (every call takes longer, so more instances help) or contended (a call
// takes longer the more callers it has, so more instances hurt).

// downstream modes.
const (
	downstreamNormal int32 = iota
	downstreamSlow
	downstreamContended
)

// downstream is the dependency every instance of one service calls.
type downstream struct {
	mode atomic.Int32

	mu      sync.Mutex
	callers map[string]time.Time // instance -> its last call
}

func (d *downstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	if d.callers == nil {
		d.callers = map[string]time.Time{}
	}
	now := time.Now()
	d.callers[r.Header.Get("X-Instance")] = now
	n := 0
	for _, at := range d.callers {
		if now.Sub(at) < 2*time.Second {
			n++
		}
	}
	d.mu.Unlock()
	var wait time.Duration
	switch d.mode.Load() {
	case downstreamNormal:
		wait = 15 * time.Millisecond
	case downstreamSlow:
		wait = 60 * time.Millisecond
	case downstreamContended:
		// A database that thrashes as clients connect: every instance
		// calling it makes each call slower, by the square of their number.
		wait = 30 * time.Millisecond * time.Duration(n*n)
	}
	select {
	case <-time.After(wait):
	case <-r.Context().Done():
	}
}

// maxInstances is how many instances a balancer knows: the runbook's cap.
const maxInstances = 8

// balancer spreads requests over the instances that accept connections,
// as a load balancer with health checks does, and exports the latency of
// every request as http_request_duration_seconds.
type balancer struct {
	portBase int
	client   *http.Client
	latency  *prometheus.HistogramVec
	reg      *prometheus.Registry
}

func newBalancer(portBase int) *balancer {
	b := &balancer{portBase: portBase, client: &http.Client{Timeout: 15 * time.Second}, reg: prometheus.NewRegistry(),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "http_request_duration_seconds", Help: "Latency of the requests the balancer served.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"code"})}
	b.reg.MustRegister(b.latency)
	return b
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" {
		promhttp.HandlerFor(b.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
		return
	}
	start := time.Now()
	code := http.StatusBadGateway
	// A random order of the instances: the first that is running serves,
	// so the load is spread evenly over the running ones.
	for _, i := range rand.Perm(maxInstances) {
		port := b.portBase + 1 + i
		resp, err := b.client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if errors.Is(err, syscall.ECONNREFUSED) {
			continue // not running: the next instance
		}
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
		}
		break
	}
	b.latency.WithLabelValues(fmt.Sprint(code)).Observe(time.Since(start).Seconds())
	w.WriteHeader(code)
}

// loadAsync sends perSecond requests to url, each on its own, with at
// most 1000 in flight.
func loadAsync(ctx context.Context, url string, perSecond int) {
	t := time.NewTicker(time.Second / time.Duration(perSecond))
	defer t.Stop()
	slots := make(chan struct{}, 1000)
	c := &http.Client{Timeout: 30 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			continue
		}
		go func() {
			defer func() { <-slots }()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
}

// runInstance is one instance of a templated service: it listens on
// port-base + instance, serves one request at a time by calling its
// downstream, and turns away what does not fit its queue with 503.
func runInstance(args []string) error {
	fs := flag.NewFlagSet("instance", flag.ContinueOnError)
	portBase := fs.Int("port-base", 0, "the service's port base")
	instance := fs.Int("instance", 0, "this instance's number, 1 to 8")
	down := fs.String("downstream", "", "the downstream's URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *instance < 1 || *instance > maxInstances || *portBase <= 0 || *down == "" {
		return errors.New("instance needs --port-base, --instance 1 to 8 and --downstream")
	}
	queue := make(chan struct{}, 21) // one served, twenty waiting
	worker := make(chan struct{}, 1)
	client := &http.Client{Timeout: 30 * time.Second}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case queue <- struct{}{}:
		default:
			http.Error(w, "queue full", http.StatusServiceUnavailable)
			return
		}
		defer func() { <-queue }()
		worker <- struct{}{}
		defer func() { <-worker }()
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, *down, nil)
		req.Header.Set("X-Instance", fmt.Sprint(*instance))
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
	})
	return http.ListenAndServe(fmt.Sprintf("127.0.0.1:%d", *portBase+*instance), h)
}
