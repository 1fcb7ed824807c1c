package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// briefLab is a lab whose escalations go to a webhook, grouped as
// grouping says.
func briefLab(t *testing.T, grouping string) (*remediationLab, chan map[string]any) {
	got, srv := jsonSink(t)
	l := newLab(t, `
tool "hook" {
  description = "A webhook for briefs."
  risk        = "low"
  notify {
    channel  = "webhook"
    url_file = "hook-url"
  }
}
`, "1h")
	writeFile(t, filepath.Join(l.dir, "hook-url"), srv.URL+"\n")
	cfg, _ := os.ReadFile(filepath.Join(l.dir, "medic.hcl"))
	writeFile(t, filepath.Join(l.dir, "medic.hcl"), string(cfg)+fmt.Sprintf(`
escalation {
  notify                   = "hook"
  max_escalations_per_hour = 100
  %s
}
`, grouping))
	return l, got
}

// briefOf is the brief of a webhook message.
func briefOf(m map[string]any) map[string]any {
	b, _ := m["brief"].(map[string]any)
	return b
}

// covered is the number of incidents a brief speaks for: its own and the
// group's others, listed or counted.
func covered(b map[string]any) int {
	also, _ := b["also"].([]any)
	more, _ := b["more"].(float64)
	return 1 + len(also) + int(more)
}

// TestStormBriefsGrouped: 500 alerts of one name that no runbook matches,
// and one of another name, escalate as 501 incidents, and the humans get
// a few briefs, one per group and interval, that together speak for every
// incident once; each incident's timeline records the brief it went out
// in.
func TestStormBriefsGrouped(t *testing.T) {
	t.Parallel()
	l, got := briefLab(t, `group_wait = "1s"
  group_interval = "2s"`)
	l.start(t)
	const storm = 500
	now := time.Now().UTC().Format(time.RFC3339)
	for n := 0; n < storm; n += 100 {
		var alerts []string
		for i := n; i < n+100; i++ {
			alerts = append(alerts, fmt.Sprintf(`{"status":"firing","labels":{"alertname":"Storm","instance":"i%d"},"startsAt":%q,"fingerprint":"%016x"}`, i, now, 0x80000+i))
		}
		if code, body := l.do(t, "POST", "/api/v1/alerts", l.token, json.RawMessage(`{"version":"4","status":"firing","receiver":"medic","alerts":[`+strings.Join(alerts, ",")+`]}`)); code != 200 {
			t.Fatalf("storm: %d %s", code, body)
		}
	}
	l.postAlert(t, "firing", "00000000000000c1", time.Now(), map[string]string{"alertname": "Other", "instance": "x"})
	eventually(t, 60*time.Second, "the storm to escalate", func() bool {
		return l.metric(t, `medic_incidents_total{outcome="escalated"}`) == storm+1
	})
	perName := map[string]int{}
	messages := 0
	for total := 0; total < storm+1; {
		select {
		case m := <-got:
			b := briefOf(m)
			messages++
			total += covered(b)
			perName[strings.SplitN(fmt.Sprint(b["title"]), " ", 2)[0]] += covered(b)
			if also, _ := b["also"].([]any); len(also) > 50 {
				t.Fatalf("a brief lists %d other incidents", len(also))
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("after %d briefs, %d incidents were briefed of %d (%v)", messages, total, storm+1, perName)
		}
	}
	t.Logf("%d incidents escalated, briefed in %d messages: %v", storm+1, messages, perName)
	if perName["Storm"] != storm || perName["Other"] != 1 || messages > 4 {
		t.Fatalf("%d messages covered %v", messages, perName)
	}
	select {
	case m := <-got:
		t.Fatalf("a brief beyond the incidents: %v", briefOf(m)["title"])
	case <-time.After(2500 * time.Millisecond):
	}
	for _, id := range []uint64{1, storm / 2, storm + 1} {
		if inc := l.incident(t, id); !hasEvent(inc, "brief_sent") {
			t.Fatalf("incident %d has no brief_sent: %s", id, timeline(inc))
		}
	}
}

// TestBriefSurvivesCrash: an escalation queues its brief in the commit
// that settles the incident. medic is killed before the group is due;
// after the restart the brief goes out, once.
func TestBriefSurvivesCrash(t *testing.T) {
	t.Parallel()
	l, got := briefLab(t, `group_wait = "1h"`)
	p := l.start(t)
	l.postAlert(t, "firing", "00000000000000c2", time.Now(), map[string]string{"alertname": "Lost", "instance": "y"})
	eventually(t, 20*time.Second, "the escalation", func() bool {
		return l.metric(t, `medic_incidents_total{outcome="escalated"}`) == 1
	})
	l.kill(t, p)
	select {
	case m := <-got:
		t.Fatalf("a brief went out before its group_wait: %v", briefOf(m)["title"])
	default:
	}
	cfg, _ := os.ReadFile(filepath.Join(l.dir, "medic.hcl"))
	writeFile(t, filepath.Join(l.dir, "medic.hcl"), strings.Replace(string(cfg), `group_wait = "1h"`, `group_wait = "0s"`, 1))
	l.start(t)
	select {
	case m := <-got:
		if b := briefOf(m); b["title"] != "Lost on y" || b["reason_code"] != "no_runbook" {
			t.Fatalf("brief after the restart: %v", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the queued brief was lost in the crash")
	}
	select {
	case m := <-got:
		t.Fatalf("a second brief: %v", briefOf(m)["title"])
	case <-time.After(1500 * time.Millisecond):
	}
	if inc := l.incident(t, 1); !hasEvent(inc, "brief_sent") {
		t.Fatalf("incident 1: %s", timeline(inc))
	}
}
