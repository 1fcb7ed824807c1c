package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzCheckFile: whatever bytes a state file holds, the meta and length
// checks that run before bbolt touches the file answer with nil or
// ErrCorrupt, and never panic. (The page check after them runs in a child
// process in serve, since bbolt may panic there.)
func FuzzCheckFile(f *testing.F) {
	dir := f.TempDir()
	good := filepath.Join(dir, "good.db")
	s, err := Open(good, DefaultOptions)
	if err != nil {
		f.Fatal(err)
	}
	s.Audit(AuditEntry{Time: t0, Kind: "x", Actor: "medic"})
	s.Close()
	b, err := os.ReadFile(good)
	if err != nil || len(b) < 8192 {
		f.Fatal(err)
	}
	f.Add(b[:8192])
	f.Add(b[:100])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "m.db")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fd, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		if err := checkMeta(fd, int64(len(data)), p); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%v is not ErrCorrupt", err)
		}
	})
}

// FuzzReadCheckpoints: a checkpoint file is read line by line; anything
// that is not a checkpoint with a valid MAC is an error, never a panic, and
// what is read back is what was written.
func FuzzReadCheckpoints(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	p := filepath.Join(f.TempDir(), "cp")
	if err := AppendCheckpoint(p, key, Checkpoint{Seq: 7, Hash: "ab", Time: t0}); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	f.Add(b)
	f.Add([]byte("{}\n"))
	f.Add([]byte("not json\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "cp")
		os.WriteFile(p, data, 0o600)
		cps, err := ReadCheckpoints(p, key)
		if err != nil {
			return
		}
		for _, c := range cps {
			line, _ := json.Marshal(c)
			if !bytes.Contains(data, []byte(c.MAC)) || len(line) == 0 {
				t.Fatalf("%+v was not in the file", c)
			}
		}
	})
}

// TestCheckpointsRoundTrip: what AppendCheckpoint writes, ReadCheckpoints
// reads back under the same key, and refuses under another.
func TestCheckpointsRoundTrip(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	p := filepath.Join(t.TempDir(), "cp")
	for i := range 3 {
		if err := AppendCheckpoint(p, key, Checkpoint{Seq: uint64(i + 1), Hash: "h", Time: t0.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	cps, err := ReadCheckpoints(p, key)
	if err != nil || len(cps) != 3 || cps[2].Seq != 3 {
		t.Fatalf("%+v %v", cps, err)
	}
	if _, err := ReadCheckpoints(p, []byte("another key, just as long 123456")); err == nil {
		t.Fatal("a checkpoint under another key was accepted")
	}
}
