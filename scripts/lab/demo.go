package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// runDemo is a demo service: it answers GET / (200, or 500 once told to
// fail), exports its requests and its process's memory on /metrics as
// every Prometheus client library does, and holds the faults the lab
// injects into it: POST /leak starts a real leak (memory the process
// allocates, touches and keeps), POST /fail makes it answer 500. Both live
// in the process, so a restart cures them, as it cures the real ones.
func runDemo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "Requests served, by status code."}, []string{"code"})
	reg.MustRegister(requests)
	requests.WithLabelValues("200")
	requests.WithLabelValues("500")

	var mu sync.Mutex
	failing, leaking := false, false
	var kept [][]byte
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := failing
		mu.Unlock()
		if f {
			requests.WithLabelValues("500").Inc()
			http.Error(w, "downstream refused", http.StatusInternalServerError)
			return
		}
		requests.WithLabelValues("200").Inc()
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		failing = true
		mu.Unlock()
	})
	mux.HandleFunc("POST /leak", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		leaking = true
		mu.Unlock()
	})
	// The leak: 8 MiB every 100 ms, written so that it is resident, up to
	// 512 MiB so that a forgotten lab cannot take the machine.
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			mu.Lock()
			if leaking && len(kept) < 64 {
				b := make([]byte, 8<<20)
				for i := range b {
					b[i] = byte(i)
				}
				kept = append(kept, b)
			}
			mu.Unlock()
		}
	}()
	fmt.Fprintf(os.Stderr, "demo serving on %s\n", *listen)
	return http.ListenAndServe(*listen, mux)
}
