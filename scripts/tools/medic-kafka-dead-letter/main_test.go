package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The tool against a Kafka-protocol broker (franz-go's kfake, in process),
// run as the child process medic runs, with the empty environment medic
// gives tools.

var toolBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "medic-kafka-dead-letter")
	if err != nil {
		panic(err)
	}
	toolBin = filepath.Join(dir, "medic-kafka-dead-letter")
	if out, err := exec.Command("go", "build", "-o", toolBin, ".").CombinedOutput(); err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type broker struct {
	addr string
	cl   *kgo.Client
	adm  *kadm.Client
}

// newBroker starts a broker with topic orders (3 partitions), ten messages
// on partition 1 of which offset 5 is the poison pill, and group billing
// committed at the pill.
func newBroker(t *testing.T) *broker {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(3, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	b := &broker{addr: c.ListenAddrs()[0]}
	b.cl, err = kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.cl.Close)
	b.adm = kadm.NewClient(b.cl)
	for i := range 10 {
		r := &kgo.Record{Topic: "orders", Partition: 1, Key: fmt.Appendf(nil, "order-%d", i), Value: fmt.Appendf(nil, `{"id":%d}`, i)}
		if i == 5 {
			r.Value = []byte("\x00\xffnot json")
			r.Headers = []kgo.RecordHeader{{Key: "producer", Value: []byte("legacy")}}
		}
		if err := b.cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var offs kadm.Offsets
	offs.AddOffset("orders", 1, 5, -1)
	resp, err := b.adm.CommitOffsets(context.Background(), "billing", offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *broker) committed(t *testing.T, group string) int64 {
	t.Helper()
	offs, err := b.adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := offs.Lookup("orders", 1)
	if !ok {
		return -1
	}
	return r.At
}

// deadLetters reads every record of orders.dlq, with a client of its own:
// a client's metadata cache would not see the topic the tool created.
func (b *broker) deadLetters(t *testing.T) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumeTopics("orders.dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), "orders.dlq")
	if err != nil {
		t.Fatal(err)
	}
	end, ok := ends.Lookup("orders.dlq", 0)
	if !ok || end.Offset <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for int64(len(out)) < end.Offset {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read orders.dlq: %v", ctx.Err())
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func (b *broker) run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(toolBin, append([]string{"--bootstrap=" + b.addr}, args...)...)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func pill(extra ...string) []string {
	return append([]string{"--topic=orders", "--partition=1", "--offset=5", "--dead-letter-topic=orders.dlq"}, extra...)
}

func TestDeadLetterAndSkip(t *testing.T) {
	b := newBroker(t)
	out, code := b.run(t, pill("--group=billing", "--dry-run")...)
	if code != 0 || !strings.Contains(out, "would copy orders/1 at offset 5 (10 bytes) to orders.dlq and move group billing to offset 6") {
		t.Fatalf("dry run: exit %d: %s", code, out)
	}
	if n := len(b.deadLetters(t)); n != 0 || b.committed(t, "billing") != 5 {
		t.Fatalf("the dry run changed something: %d dead letters, group at %d", n, b.committed(t, "billing"))
	}

	out, code = b.run(t, pill("--group=billing")...)
	if code != 0 || !strings.Contains(out, "copied orders/1 at offset 5") || !strings.Contains(out, "moved group billing to offset 6") {
		t.Fatalf("exit %d: %s", code, out)
	}
	dl := b.deadLetters(t)
	if len(dl) != 1 || string(dl[0].Value) != "\x00\xffnot json" || string(dl[0].Key) != "order-5" {
		t.Fatalf("dead letters: %+v", dl)
	}
	headers := map[string]string{}
	for _, h := range dl[0].Headers {
		headers[h.Key] = string(h.Value)
	}
	want := map[string]string{"producer": "legacy", "dead-letter.topic": "orders", "dead-letter.partition": "1", "dead-letter.offset": "5", "dead-letter.group": "billing"}
	for k, v := range want {
		if headers[k] != v {
			t.Errorf("header %s = %q, want %q (all: %v)", k, headers[k], v, headers)
		}
	}
	if at := b.committed(t, "billing"); at != 6 {
		t.Fatalf("group billing at %d, want 6", at)
	}

	// Run again, as after a crash that lost the result: nothing twice.
	out, code = b.run(t, pill("--group=billing")...)
	if code != 0 || !strings.Contains(out, "already past") || len(b.deadLetters(t)) != 1 {
		t.Fatalf("second run: exit %d, %d dead letters: %s", code, len(b.deadLetters(t)), out)
	}
}

func TestRefusals(t *testing.T) {
	b := newBroker(t)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no flags", nil, 2, "--topic and --dead-letter-topic are required"},
		{"dead letters into the topic", []string{"--topic=orders", "--partition=1", "--offset=5", "--dead-letter-topic=orders"}, 2, "must not be the topic itself"},
		{"negative offset", []string{"--topic=orders", "--partition=1", "--offset=-3", "--dead-letter-topic=x"}, 2, "--offset must be"},
		{"partition too large", []string{"--topic=orders", "--partition=4294967296", "--offset=1", "--dead-letter-topic=x"}, 2, "--partition must be"},
		{"stray argument", append(pill(), "; rm -rf /"), 2, "unexpected argument"},
		{"unknown flag", pill("--exec=sh"), 2, "flag provided but not defined"},
		{"no such partition", []string{"--topic=orders", "--partition=7", "--offset=1", "--dead-letter-topic=orders.dlq"}, 1, "has no partition 7"},
		{"past the end", []string{"--topic=orders", "--partition=1", "--offset=10", "--dead-letter-topic=orders.dlq"}, 1, "holds offsets 0 to 9, not 10"},
		{"group not there yet", []string{"--topic=orders", "--partition=1", "--offset=7", "--dead-letter-topic=orders.dlq", "--group=billing"}, 1, "has not reached offset 7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, code := b.run(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want %d with %q: %s", code, tc.code, tc.want, out)
			}
		})
	}
	if n := len(b.deadLetters(t)); n != 0 || b.committed(t, "billing") != 5 {
		t.Fatalf("a refusal changed something: %d dead letters, group at %d", n, b.committed(t, "billing"))
	}
}

// TestGroupWithMembers: Kafka takes an offset from outside a group only
// while the group is empty. A consumer that stays is refused after --wait,
// with the copy kept; a later run, while the consumer crash-loops, does not
// copy again and commits between two of its runs.
func TestGroupWithMembers(t *testing.T) {
	b := newBroker(t)
	join := func() *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("orders"),
			kgo.DisableAutoCommit(), kgo.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			t.Error(err)
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			cl.PollFetches(ctx)
			if g, err := b.adm.DescribeGroups(ctx, "billing"); err == nil && g["billing"].State == "Stable" {
				return cl
			}
		}
		t.Error("the consumer did not join")
		return cl
	}
	stays := join()
	out, code := b.run(t, pill("--group=billing", "--wait=1s")...)
	if code != 1 || !strings.Contains(out, "kept active members for 1s") || !strings.Contains(out, "the message is in orders.dlq") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if n := len(b.deadLetters(t)); n != 1 || b.committed(t, "billing") != 5 {
		t.Fatalf("%d dead letters, group at %d", n, b.committed(t, "billing"))
	}
	stays.Close()

	// The consumer crash-loops: in the group for a while, then out.
	stop, looped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(looped)
		for {
			cl := join()
			time.Sleep(300 * time.Millisecond)
			cl.Close()
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	out, code = b.run(t, pill("--group=billing", "--wait=20s")...)
	close(stop)
	<-looped
	if code != 0 || !strings.Contains(out, "already in orders.dlq/0 at offset 0") || !strings.Contains(out, "moved group billing to offset 6") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if n := len(b.deadLetters(t)); n != 1 {
		t.Fatalf("%d dead letters, want the refused run's copy only", n)
	}
}
