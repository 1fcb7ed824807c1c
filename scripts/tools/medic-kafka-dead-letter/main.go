// Command medic-kafka-dead-letter takes a poison-pill message out of a
// consumer group's way: it copies the message at one offset of a partition
// to a dead-letter topic, with its key, value and headers and with headers
// that say where it came from, and then, given a group, commits the offset
// after it for that group. The commit happens only once the copy is
// acknowledged by every in-sync replica, so the message is never lost.
//
//	medic-kafka-dead-letter --bootstrap=HOST:PORT[,HOST:PORT] --topic=T --partition=N \
//	    --offset=N --dead-letter-topic=T [--group=G] [--wait=30s] [--dry-run]
//
// Kafka accepts an offset commit from outside a group only while the group
// has no members, as kafka-consumer-groups --reset-offsets requires. A
// consumer that crashes on the message leaves the group each time it
// exits; the tool retries the commit for --wait until it lands between two
// restarts. A group whose consumers stay in it is refused with that reason.
//
// It is idempotent: a group already past the offset is left as it is and
// nothing is copied, and a message whose copy is among the dead-letter
// topic's last 1,000 records (by the headers below) is not copied again.
// A group that has not reached the offset yet is refused, because the
// message is then not what holds it up.
//
// Exit status: 0 done (or nothing to do), 1 failed, 2 usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

type options struct {
	bootstrap []string
	topic     string
	partition int32
	offset    int64
	dlq       string
	group     string
	wait      time.Duration
	dryRun    bool
}

func main() {
	o, err := parse(os.Args[1:], os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "medic-kafka-dead-letter:", err)
		}
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.wait+30*time.Second)
	defer cancel()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "medic-kafka-dead-letter:", err)
		os.Exit(1)
	}
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("medic-kafka-dead-letter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bootstrap := fs.String("bootstrap", "", "Kafka brokers, host:port, comma-separated")
	fs.StringVar(&o.topic, "topic", "", "the topic that holds the message")
	partition := fs.Int64("partition", -1, "the message's partition")
	fs.Int64Var(&o.offset, "offset", -1, "the message's offset")
	fs.StringVar(&o.dlq, "dead-letter-topic", "", "where the copy goes; created with one partition when missing")
	fs.StringVar(&o.group, "group", "", "the consumer group to move past the message (optional)")
	fs.DurationVar(&o.wait, "wait", 30*time.Second, "how long to retry the commit while the group has members")
	fs.BoolVar(&o.dryRun, "dry-run", false, "read the message and report what would be done; change nothing")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *bootstrap == "":
		return o, errors.New("--bootstrap is required")
	case o.topic == "" || o.dlq == "":
		return o, errors.New("--topic and --dead-letter-topic are required")
	case o.topic == o.dlq:
		return o, errors.New("the dead-letter topic must not be the topic itself")
	case *partition < 0 || *partition > 1<<31-1:
		return o, errors.New("--partition must be a partition number")
	case o.offset < 0:
		return o, errors.New("--offset must be an offset (0 or more)")
	case o.wait < 0:
		return o, errors.New("--wait must not be negative")
	}
	o.partition = int32(*partition)
	for _, b := range strings.Split(*bootstrap, ",") {
		if b = strings.TrimSpace(b); b != "" {
			o.bootstrap = append(o.bootstrap, b)
		}
	}
	return o, nil
}

func run(ctx context.Context, o options, out io.Writer) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.bootstrap...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	where := fmt.Sprintf("%s/%d at offset %d", o.topic, o.partition, o.offset)

	if err := checkBounds(ctx, adm, o); err != nil {
		return err
	}
	if o.group != "" {
		committed, err := committedOffset(ctx, adm, o)
		if err != nil {
			return err
		}
		switch {
		case committed > o.offset:
			fmt.Fprintf(out, "group %s is at offset %d, already past %s: nothing to do\n", o.group, committed, where)
			return nil
		case committed < o.offset:
			return fmt.Errorf("group %s is at offset %d on %s/%d: it has not reached offset %d, so that message is not what holds it up",
				o.group, committed, o.topic, o.partition, o.offset)
		}
	}
	rec, err := readOne(ctx, o)
	if err != nil {
		return err
	}
	if o.dryRun {
		fmt.Fprintf(out, "would copy %s (%d bytes) to %s", where, len(rec.Value), o.dlq)
		if o.group != "" {
			fmt.Fprintf(out, " and move group %s to offset %d", o.group, o.offset+1)
		}
		fmt.Fprintln(out)
		return nil
	}
	source := []kgo.RecordHeader{
		{Key: "dead-letter.topic", Value: []byte(o.topic)},
		{Key: "dead-letter.partition", Value: []byte(strconv.Itoa(int(o.partition)))},
		{Key: "dead-letter.offset", Value: []byte(strconv.FormatInt(o.offset, 10))},
		{Key: "dead-letter.group", Value: []byte(o.group)},
	}
	prev, err := findCopy(ctx, adm, o, source)
	if err != nil {
		return err
	}
	if prev != nil {
		fmt.Fprintf(out, "%s is already in %s/%d at offset %d\n", where, o.dlq, prev.Partition, prev.Offset)
	} else {
		if err := ensureTopic(ctx, adm, o.dlq); err != nil {
			return err
		}
		copied := &kgo.Record{Topic: o.dlq, Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp,
			Headers: append(append([]kgo.RecordHeader(nil), rec.Headers...), source...)}
		if err := cl.ProduceSync(ctx, copied).FirstErr(); err != nil {
			return fmt.Errorf("copy %s to %s: %w", where, o.dlq, err)
		}
		fmt.Fprintf(out, "copied %s (%d bytes) to %s/%d at offset %d\n", where, len(rec.Value), o.dlq, copied.Partition, copied.Offset)
	}
	if o.group == "" {
		return nil
	}
	tries, err := commitPast(ctx, adm, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "moved group %s to offset %d on %s/%d (%d tries)\n", o.group, o.offset+1, o.topic, o.partition, tries)
	return nil
}

// checkBounds refuses an offset the partition does not hold.
func checkBounds(ctx context.Context, adm *kadm.Client, o options) error {
	starts, err := adm.ListStartOffsets(ctx, o.topic)
	if err != nil {
		return fmt.Errorf("list offsets of %s: %w", o.topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, o.topic)
	if err != nil {
		return fmt.Errorf("list offsets of %s: %w", o.topic, err)
	}
	start, ok1 := starts.Lookup(o.topic, o.partition)
	end, ok2 := ends.Lookup(o.topic, o.partition)
	if !ok1 || !ok2 {
		return fmt.Errorf("topic %s has no partition %d", o.topic, o.partition)
	}
	for _, l := range []kadm.ListedOffset{start, end} {
		if l.Err != nil {
			return fmt.Errorf("list offsets of %s/%d: %w", o.topic, o.partition, l.Err)
		}
	}
	if o.offset < start.Offset || o.offset >= end.Offset {
		return fmt.Errorf("%s/%d holds offsets %d to %d, not %d", o.topic, o.partition, start.Offset, end.Offset-1, o.offset)
	}
	return nil
}

// committedOffset is the group's committed offset on the partition, or -1
// when it has none.
func committedOffset(ctx context.Context, adm *kadm.Client, o options) (int64, error) {
	offs, err := adm.FetchOffsetsForTopics(ctx, o.group, o.topic)
	if err != nil {
		return 0, fmt.Errorf("fetch the offsets of group %s: %w", o.group, err)
	}
	r, ok := offs.Lookup(o.topic, o.partition)
	if !ok {
		return -1, nil
	}
	if r.Err != nil {
		return 0, fmt.Errorf("fetch the offset of group %s on %s/%d: %w", o.group, o.topic, o.partition, r.Err)
	}
	return r.At, nil
}

// readOne reads exactly the record at the offset.
func readOne(ctx context.Context, o options) (*kgo.Record, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.bootstrap...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.topic: {o.partition: kgo.NewOffset().At(o.offset)}}))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s/%d at offset %d: %w", o.topic, o.partition, o.offset, err)
		}
		for _, fe := range fs.Errors() {
			return nil, fmt.Errorf("read %s/%d at offset %d: %w", o.topic, o.partition, o.offset, fe.Err)
		}
		for _, r := range fs.Records() {
			if r.Offset == o.offset {
				return r, nil
			}
			if r.Offset > o.offset {
				return nil, fmt.Errorf("%s/%d has no message at offset %d (the next is at %d: compacted, or a transaction marker)",
					o.topic, o.partition, o.offset, r.Offset)
			}
		}
	}
}

// dedupWindow is how many of each dead-letter partition's last records a
// run reads to find an earlier copy: enough for the runs of one incident,
// and bounded however large the topic grows.
const dedupWindow = 1000

// findCopy returns an earlier copy of the message in the dead-letter
// topic, or nil. A missing topic holds none.
func findCopy(ctx context.Context, adm *kadm.Client, o options, source []kgo.RecordHeader) (*kgo.Record, error) {
	ends, err := adm.ListEndOffsets(ctx, o.dlq)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", o.dlq, err)
	}
	starts, err := adm.ListStartOffsets(ctx, o.dlq)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", o.dlq, err)
	}
	from := map[string]map[int32]kgo.Offset{o.dlq: {}}
	left := 0
	ends.Each(func(end kadm.ListedOffset) {
		start, ok := starts.Lookup(end.Topic, end.Partition)
		if end.Err != nil || !ok || start.Err != nil || end.Offset <= start.Offset {
			return
		}
		at := max(start.Offset, end.Offset-dedupWindow)
		from[o.dlq][end.Partition] = kgo.NewOffset().At(at)
		left += int(end.Offset - at)
	})
	if left == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.bootstrap...), kgo.ConsumePartitions(from))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s for an earlier copy: %w", o.dlq, err)
		}
		for _, fe := range fs.Errors() {
			return nil, fmt.Errorf("read %s for an earlier copy: %w", o.dlq, fe.Err)
		}
		for _, r := range fs.Records() {
			left--
			if hasHeaders(r, source) {
				return r, nil
			}
		}
	}
	return nil, nil
}

// hasHeaders says whether r carries every header of want.
func hasHeaders(r *kgo.Record, want []kgo.RecordHeader) bool {
	for _, w := range want {
		if !slices.ContainsFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == w.Key && string(h.Value) == string(w.Value) }) {
			return false
		}
	}
	return true
}

func ensureTopic(ctx context.Context, adm *kadm.Client, topic string) error {
	_, err := adm.CreateTopic(ctx, 1, -1, nil, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create the dead-letter topic %s: %w", topic, err)
	}
	return nil
}

// commitPast commits the offset after the message, retrying while the
// group has members (their commits are the only ones Kafka takes then).
func commitPast(ctx context.Context, adm *kadm.Client, o options) (int, error) {
	var offs kadm.Offsets
	offs.AddOffset(o.topic, o.partition, o.offset+1, -1)
	deadline := time.Now().Add(o.wait)
	for tries := 1; ; tries++ {
		resp, err := adm.CommitOffsets(ctx, o.group, offs)
		if err == nil {
			err = resp.Error()
		}
		if err == nil {
			return tries, nil
		}
		busy := errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.RebalanceInProgress)
		if !busy {
			return tries, fmt.Errorf("the message is in %s, but moving group %s past it failed: %w", o.dlq, o.group, err)
		}
		if time.Now().After(deadline) {
			return tries, fmt.Errorf("the message is in %s, but group %s kept active members for %s, and Kafka takes an offset from outside a group only while it is empty: stop its consumers and run again", o.dlq, o.group, o.wait)
		}
		select {
		case <-ctx.Done():
			return tries, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
