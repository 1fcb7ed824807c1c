package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const defaultDir = "/tmp/medic-lab"

// lab is everything one run of the lab started.
type lab struct {
	o    options
	repo string
	dir  string

	mu         sync.Mutex
	procs      []*proc
	mounts     []string
	systemdPID int
	bus        string
	servers    []*http.Server
	kafka      *kafkaLab
	cancel     context.CancelFunc
	bg         sync.WaitGroup

	promAddr, amAddr, medicAddr, nodeAddr, kafkaMetricsAddr, sinkAddr string
	token, approverToken                                              string

	// services are the scrape targets of the demo services by job name,
	// units the systemd units started at the start.
	services map[string]string
	units    []string
	// The templated services by job: balancer, downstream and its address.
	balancers       map[string]*balancer
	downstreams     map[string]*downstream
	downstreamAddrs map[string]string
	briefs          chan map[string]any
	// loads stop the traffic of each run's service, by job.
	loads map[string]context.CancelFunc
}

// labState is what `lab down` needs to stop a lab: written as things start.
type labState struct {
	PID        int      `json:"pid"`
	Groups     []int    `json:"process_groups"`
	SystemdPID int      `json:"systemd_pid"`
	Mounts     []string `json:"mounts"`
}

func newLab(o options) (*lab, error) {
	repo, err := repoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return nil, err
	}
	if st, err := readState(dir); err == nil && syscall.Kill(st.PID, 0) == nil {
		return nil, fmt.Errorf("a lab is running in %s (pid %d): stop it with `go run ./scripts/lab down`", dir, st.PID)
	}
	if err := teardown(dir); err != nil {
		return nil, err
	}
	for _, sub := range []string{"logs", "bin", "units", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	return &lab{o: o, repo: repo, dir: dir, services: map[string]string{}, briefs: make(chan map[string]any, 64),
		balancers: map[string]*balancer{}, downstreams: map[string]*downstream{}, downstreamAddrs: map[string]string{}, loads: map[string]context.CancelFunc{},
		token: "lab-token-" + randHex(), approverToken: "lab-approver-" + randHex()}, nil
}

// repoRoot is the checkout the lab runs from: it builds medic from it
// and uses its runbooks.hcl, scripts/tools and examples.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("find the checkout (run the lab from it): %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if _, err := os.Stat(filepath.Join(dir, "runbooks.hcl")); err != nil {
		return "", fmt.Errorf("%s has no runbooks.hcl: run the lab from medic's checkout", dir)
	}
	return dir, nil
}

func randHex() string {
	b := make([]byte, 8)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func (l *lab) saveState() {
	l.mu.Lock()
	st := labState{PID: os.Getpid(), SystemdPID: l.systemdPID, Mounts: l.mounts}
	for _, p := range l.procs {
		if p.cmd.Process != nil {
			st.Groups = append(st.Groups, p.cmd.Process.Pid)
		}
	}
	l.mu.Unlock()
	b, _ := json.Marshal(st)
	os.WriteFile(filepath.Join(l.dir, "lab.json"), b, 0o644)
}

func readState(dir string) (labState, error) {
	var st labState
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// cleanup stops everything in the reverse order of its start, unmounts,
// and removes the lab's folder.
func (l *lab) cleanup() {
	if l.cancel != nil {
		l.cancel()
	}
	l.bg.Wait()
	for _, s := range l.servers {
		s.Close()
	}
	for i := len(l.procs) - 1; i >= 0; i-- {
		if l.procs[i].name == "systemd" {
			syscall.Kill(l.systemdPID, syscall.SIGKILL)
		}
		l.procs[i].stop()
	}
	if l.kafka != nil {
		l.kafka.close()
	}
	// Everything recorded is stopped: teardown must not signal process
	// groups whose IDs another process may have taken since.
	os.Remove(filepath.Join(l.dir, "lab.json"))
	if err := teardown(l.dir); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
	}
}

// teardown removes what a lab left in dir, whether it ended cleanly or
// not: processes it recorded, its systemd, its mounts, and the folder.
func teardown(dir string) error {
	st, err := readState(dir)
	if err == nil {
		for _, g := range st.Groups {
			syscall.Kill(-g, syscall.SIGKILL)
		}
		if st.SystemdPID > 0 {
			syscall.Kill(st.SystemdPID, syscall.SIGKILL)
		}
	}
	// Every mount below dir, deepest first, whether recorded or not.
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var mps []string
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
				mps = append(mps, f[4])
			}
		}
		for i := len(mps) - 1; i >= 0; i-- {
			exec.Command("umount", "-l", mps[i]).Run()
		}
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// runDown stops a lab left running by --keep: it asks the lab process to
// stop, which cleans up after itself, and cleans up whatever is left.
func runDown(args []string) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	dir := fs.String("dir", defaultDir, "the lab's folder")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := readState(*dir)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(*dir); serr != nil {
			fmt.Println("no lab in", *dir)
			return nil
		}
	} else if err == nil && syscall.Kill(st.PID, syscall.SIGTERM) == nil {
		for i := 0; i < 300 && syscall.Kill(st.PID, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := teardown(*dir); err != nil {
		return err
	}
	fmt.Println("lab stopped; removed", *dir)
	return nil
}

// serve runs an HTTP handler of the lab's own on addr.
func (l *lab) serve(addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	l.servers = append(l.servers, s)
	go s.Serve(ln)
	return nil
}

func (l *lab) printAddresses() {
	fmt.Printf(`
The lab keeps running (stop it with Ctrl-C or: go run ./scripts/lab down)
  Prometheus     http://%s
  Alertmanager   http://%s
  medic          http://%s   (token in %s)
  node_exporter  http://%s/metrics
  kafka_exporter http://%s/metrics   (broker %s)
  logs           %s
`, l.promAddr, l.amAddr, l.medicAddr, filepath.Join(l.dir, "token"), l.nodeAddr, l.kafkaMetricsAddr, l.kafka.addr, filepath.Join(l.dir, "logs"))
}
