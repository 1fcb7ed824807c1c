package engine

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"medic/state"
)

// The audit log is hash-chained in the state file, and each entry carries
// an HMAC of its hash under a key kept outside it; checkpoints of the chain's
// head go to a second file and to the log. Together they make these
// detectable by `medic audit --verify`: an edited entry, even with the chain
// recomputed; a deleted or inserted entry; entries dropped from the end with
// the tip fixed; a wiped log. They do not protect against someone who can
// read the key, nor against dropping entries written after the last
// checkpoint together with the checkpoint file's own tail; the log lines of
// the checkpoints (journald) are the witness for that.

// CheckpointInterval is how often serve writes a checkpoint when the audit
// log moved.
const CheckpointInterval = time.Minute

// LoadAuditKey reads the audit key, and creates the file with a new key,
// 32 random bytes written as hex, when it does not exist.
func LoadAuditKey(path string) (key []byte, created bool, err error) {
	key, err = ReadAuditKey(path)
	if !errors.Is(err, os.ErrNotExist) {
		return key, false, err
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("create audit key: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("create audit key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("create audit key: %w", err)
	}
	return key, true, f.Close()
}

// ReadAuditKey reads an existing audit key: at least 16 bytes, as hex.
func ReadAuditKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read audit key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("audit key %s: not at least 16 bytes of hex", path)
	}
	return key, nil
}

// Checkpoint writes a checkpoint of the audit log's head when it moved since
// the last one, and logs it.
func (e *Engine) Checkpoint() error {
	seq, hash, err := e.store.AuditTip()
	if err != nil || seq == 0 || seq == e.checkpointed.Load() {
		return err
	}
	_, path := e.Config().Storage.AuditFiles()
	c := state.Checkpoint{Seq: seq, Hash: hash, Time: e.now()}
	if err := state.AppendCheckpoint(path, e.auditKey, c); err != nil {
		return err
	}
	e.checkpointed.Store(seq)
	e.logger.Info("audit checkpoint", "component", "audit", "seq", seq, "hash", hash)
	return nil
}

// VerifyAudit checks the audit log's chain, its MACs and its checkpoints.
func VerifyAudit(store *state.Store, key []byte, checkpointFile string) (int, error) {
	cps, err := state.ReadCheckpoints(checkpointFile, key)
	if err != nil {
		return 0, err
	}
	return store.VerifyAudit(key, cps)
}
