// Command lab breaks real services and shows medic healing them.
//
//	go run ./scripts/lab [--keep] [--short] [--runs N] [--dir DIR]
//	go run ./scripts/lab down [--dir DIR]
//
// It starts Debian's Prometheus, Alertmanager and node_exporter, a real
// systemd (scripts/sandbox-systemd) running demo services, a Kafka-protocol
// broker in process (franz-go's kfake) with producers and crash-looping
// consumers, and `medic serve` with the shipped runbooks.hcl and tools,
// each on free 127.0.0.1 ports with its data under DIR. Prometheus scrapes
// every second and evaluates the public alert rules with their `for`
// shortened to a few seconds (rules.go says what changed). The lab then
// injects each fault into a real process, waits for medic to settle the
// incident, checks the outcome, and prints a table of what happened and
// how long each stage took. It exits 1 when a scenario misses its
// expected outcome.
//
// --keep leaves everything running and prints the addresses until `down`
// (or Ctrl-C) stops it; either way nothing is left behind. It needs root:
// systemd's namespaces and the tmpfs of the disk scenario.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	var err error
	args := os.Args[1:]
	cmd := ""
	if len(args) > 0 && (args[0] == "down" || args[0] == "demo" || args[0] == "consumer" || args[0] == "instance") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "demo":
		err = runDemo(args)
	case "consumer":
		err = runConsumer(args)
	case "instance":
		err = runInstance(args)
	case "down":
		err = runDown(args)
	default:
		var ok bool
		ok, err = runLab(args)
		if err == nil && !ok {
			os.Exit(1)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(2)
	}
}

type options struct {
	dir   string
	keep  bool
	short bool
	runs  int
	only  map[string]bool
}

// want says whether the lab runs the scenario with the id.
func (o options) want(id string) bool {
	for _, sc := range scenarios {
		if sc.id == id {
			if len(o.only) > 0 {
				return o.only[id]
			}
			return sc.short || !o.short
		}
	}
	return false
}

func runLab(args []string) (bool, error) {
	var o options
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", defaultDir, "the lab's folder, removed at the end")
	fs.BoolVar(&o.keep, "keep", false, "leave everything running and print the addresses, until `lab down` or Ctrl-C")
	fs.BoolVar(&o.short, "short", false, "only the poison pill, the hung service, the control run and the fix that makes things worse, once each (the test suite's run)")
	fs.IntVar(&o.runs, "runs", 3, "runs of each scenario; the table gives the median")
	only := fs.String("scenarios", "", "run only these scenarios, comma-separated: "+scenarioIDs())
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.runs < 1 || o.runs > 9 {
		return false, fmt.Errorf("--runs must be 1 to 9")
	}
	if o.short {
		o.runs = 1
	}
	if *only != "" {
		o.only = map[string]bool{}
		for _, id := range strings.Split(*only, ",") {
			if !strings.Contains(","+scenarioIDs()+",", ","+id+",") {
				return false, fmt.Errorf("no scenario %q; there are %s", id, scenarioIDs())
			}
			o.only[id] = true
		}
	}
	if os.Geteuid() != 0 {
		return false, fmt.Errorf("the lab needs root: it boots a systemd in namespaces of its own and mounts a tmpfs")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	l, err := newLab(o)
	if err != nil {
		return false, err
	}
	defer l.cleanup()
	if err := l.up(ctx); err != nil {
		return false, err
	}
	ok := l.runScenarios(ctx)
	if o.keep && ctx.Err() == nil {
		l.printAddresses()
		<-ctx.Done()
	}
	return ok, nil
}

func scenarioIDs() string {
	ids := make([]string, len(scenarios))
	for i, sc := range scenarios {
		ids[i] = sc.id
	}
	return strings.Join(ids, ",")
}
