package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The Kafka side of the lab: a Kafka-protocol broker in process (franz-go's
// kfake), producers of orders, consumers that crash on a message they
// cannot deserialize, and lag exported as kafka_exporter names it.

// kafkaLab is the broker and the lab's admin client of it.
type kafkaLab struct {
	cluster *kfake.Cluster
	addr    string
	cl      *kgo.Client
	adm     *kadm.Client

	mu     sync.Mutex
	groups map[string]string // consumer group -> its topic
}

// startKafka starts the broker on a free 127.0.0.1 port.
func startKafka() (*kafkaLab, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
	if err != nil {
		return nil, fmt.Errorf("start the Kafka broker: %w", err)
	}
	k := &kafkaLab{cluster: c, addr: c.ListenAddrs()[0], groups: map[string]string{}}
	k.cl, err = kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		c.Close()
		return nil, err
	}
	k.adm = kadm.NewClient(k.cl)
	return k, nil
}

func (k *kafkaLab) close() {
	k.cl.Close()
	k.cluster.Close()
}

// addTopic creates a topic of three partitions for a group to consume.
func (k *kafkaLab) addTopic(ctx context.Context, topic, group string) error {
	if _, err := k.adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	k.mu.Lock()
	k.groups[group] = topic
	k.mu.Unlock()
	return nil
}

// produce writes orders to every partition of the topic, perSecond each,
// until ctx ends.
func (k *kafkaLab) produce(ctx context.Context, topic string, perSecond int) {
	t := time.NewTicker(time.Second / time.Duration(perSecond))
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for p := range int32(3) {
			v, _ := json.Marshal(map[string]any{"order": n, "amount": n % 97})
			k.cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: p, Value: v}, nil)
		}
	}
}

// poison writes one message no consumer can deserialize to a partition.
func (k *kafkaLab) poison(ctx context.Context, topic string, partition int32) error {
	r := &kgo.Record{Topic: topic, Partition: partition, Key: []byte("legacy-export"), Value: []byte("\x00\x01\xffnot an order")}
	return k.cl.ProduceSync(ctx, r).FirstErr()
}

// serveMetrics is the lab's kafka_exporter: on each scrape it reads the
// brokers, the end offsets and each group's committed offsets, and writes
// kafka_broker_info, kafka_consumergroup_current_offset and
// kafka_consumergroup_lag with kafka_exporter's names and labels.
func (k *kafkaLab) serveMetrics(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 800*time.Millisecond)
	defer cancel()
	k.mu.Lock()
	groups := make(map[string]string, len(k.groups))
	for g, t := range k.groups {
		groups[g] = t
	}
	k.mu.Unlock()
	var b strings.Builder
	b.WriteString("# TYPE kafka_broker_info gauge\n")
	fmt.Fprintf(&b, "kafka_broker_info{address=%q,id=\"0\"} 1\n", k.addr)
	b.WriteString("# TYPE kafka_consumergroup_current_offset gauge\n# TYPE kafka_consumergroup_lag gauge\n")
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		topic := groups[g]
		ends, err := k.adm.ListEndOffsets(ctx, topic)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		offs, err := k.adm.FetchOffsetsForTopics(ctx, g, topic)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		for p := range int32(3) {
			end, ok := ends.Lookup(topic, p)
			c, has := offs.Lookup(topic, p)
			if !ok || !has || c.Err != nil || c.At < 0 {
				continue // kafka_exporter reports only committed partitions
			}
			l := fmt.Sprintf("consumergroup=%q,partition=\"%d\",topic=%q", g, p, topic)
			fmt.Fprintf(&b, "kafka_consumergroup_current_offset{%s} %d\n", l, c.At)
			fmt.Fprintf(&b, "kafka_consumergroup_lag{%s} %d\n", l, max(end.Offset-c.At, 0))
		}
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	w.Write([]byte(b.String()))
}

// runConsumer consumes a topic in a group and commits what it processed.
// A message it cannot deserialize ends it with status 1 after it leaves
// the group, as a consumer whose handler throws does; whoever supervises
// it starts it again, and it meets the same message again.
func runConsumer(args []string) error {
	fs := flag.NewFlagSet("consumer", flag.ContinueOnError)
	brokers := fs.String("brokers", "", "bootstrap address")
	group := fs.String("group", "", "consumer group")
	topic := fs.String("topic", "", "topic")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(*brokers), kgo.ConsumerGroup(*group), kgo.ConsumeTopics(*topic),
		kgo.DisableAutoCommit(), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close() // leaves the group
	ctx := context.Background()
	for {
		fetches := cl.PollFetches(ctx)
		if err := fetches.Err0(); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		// Each partition is handled on its own, as a consumer with a worker
		// per partition does: the others are processed and committed, and
		// the first message that fails stops its partition and then the
		// consumer.
		var done []*kgo.Record
		var bad *kgo.Record
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				var order map[string]any
				if json.Unmarshal(r.Value, &order) != nil {
					if bad == nil {
						bad = r
					}
					return
				}
				done = append(done, r)
			}
		})
		if err := cl.CommitRecords(ctx, done...); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		if bad != nil {
			return fmt.Errorf("cannot deserialize %s/%d at offset %d: %q", bad.Topic, bad.Partition, bad.Offset, bad.Value)
		}
	}
}
