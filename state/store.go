package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the layout this code reads and writes. Open refuses a file
// written by a newer medic rather than guessing at its layout.
const SchemaVersion = 4

var (
	bucketMeta         = []byte("meta")
	bucketInbox        = []byte("inbox")
	bucketDead         = []byte("inbox_dead")
	bucketIncidents    = []byte("incidents")
	bucketIncidentKeys = []byte("incident_keys")
	bucketFingerprints = []byte("fingerprints")
	bucketIgnored      = []byte("ignored")

	keySchemaVersion = []byte("schema_version")

	allBuckets = [][]byte{bucketMeta, bucketInbox, bucketDead, bucketIncidents, bucketIncidentKeys, bucketFingerprints, bucketIgnored,
		bucketJournal, bucketIdempotency, bucketToolStats, bucketAudit, bucketDecisions, bucketApprovals,
		bucketFixes, bucketRunbookStats, bucketEscalations, bucketJournalByIncident, bucketAuditByIncident, bucketRunning, bucketUrgent, bucketBriefs, bucketRecent}
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("state is closed")

// ErrLocked is returned by Open when another process holds the database.
var ErrLocked = errors.New("database is locked by another process")

// Options tune Open.
type Options struct {
	// LockTimeout bounds the wait for the file lock, so that a second
	// `medic serve` on the same file fails fast instead of hanging.
	LockTimeout time.Duration
	// GroupCommit selects how concurrent inbox writers share a commit:
	// GroupQueue (the default) or GroupBoltBatch.
	GroupCommit GroupCommit
	// MaxBatchDelay is how long db.Batch waits to gather writers; only
	// GroupBoltBatch uses it.
	MaxBatchDelay time.Duration
	// MaxBatchSize caps how many writers share one commit.
	MaxBatchSize int
	// AuditKey authenticates every new audit entry (HMAC-SHA256); it is
	// kept outside the state file, so that whoever can write the file
	// cannot forge entries. Empty: entries carry no MAC.
	AuditKey []byte
	// ReadOnly opens an existing file without changing it, for offline
	// checks; the schema is not migrated.
	ReadOnly bool
}

// GroupCommit is a strategy for sharing one commit between writers.
type GroupCommit int

const (
	// GroupQueue commits everything queued behind the first waiting
	// writer, with no timer. Measured on a 2-core machine it carries about
	// twice the load of GroupBoltBatch at a lower p99 (README, Benchmarks).
	GroupQueue GroupCommit = iota
	// GroupBoltBatch is bbolt's db.Batch: writers that arrive within
	// MaxBatchDelay share a commit.
	GroupBoltBatch
)

// DefaultOptions are the values `medic serve` uses.
var DefaultOptions = Options{
	LockTimeout:   time.Second,
	GroupCommit:   GroupQueue,
	MaxBatchDelay: 2 * time.Millisecond,
	MaxBatchSize:  1000,
}

// Store is medic's state. It is safe for concurrent use.
type Store struct {
	db *bolt.DB

	inboxDepth atomic.Int64
	// processed counts the inbox entries the worker processed since Open.
	processed atomic.Uint64
	openCount atomic.Int64
	commits   atomic.Uint64
	writes    atomic.Uint64
	lastTx    atomic.Int64

	auditKey []byte

	boltBatch bool
	maxBatch  int
	queue     chan *commitReq
	loopDone  chan struct{}
	closeMu   sync.RWMutex
	closed    bool
}

// Open opens or creates the database at path, creating its directory, and
// migrates an empty file to the current schema.
func Open(path string, o Options) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.LockTimeout, FreelistType: bolt.FreelistMapType, NoFreelistSync: true, InitialMmapSize: 64 << 20,
		ReadOnly: o.ReadOnly})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if o.MaxBatchDelay > 0 {
		db.MaxBatchDelay = o.MaxBatchDelay
	}
	if o.MaxBatchSize > 0 {
		db.MaxBatchSize = o.MaxBatchSize
	}
	s := &Store{db: db, auditKey: o.AuditKey, boltBatch: o.GroupCommit == GroupBoltBatch, maxBatch: db.MaxBatchSize}
	s.lastTx.Store(-1)
	if o.ReadOnly {
		return s, nil
	}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := s.countAtOpen(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if !s.boltBatch {
		s.queue = make(chan *commitReq, s.maxBatch)
		s.loopDone = make(chan struct{})
		go s.commitLoop()
	}
	return s, nil
}

func (s *Store) migrate() error {
	return s.update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySchemaVersion); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("corrupt schema_version (%d bytes)", len(v))
			}
			got := binary.BigEndian.Uint64(v)
			if got > SchemaVersion {
				return fmt.Errorf("schema version %d is newer than this medic understands (%d)", got, SchemaVersion)
			}
			if got < 2 {
				if err := indexByIncident(tx); err != nil {
					return fmt.Errorf("migrate to schema 2: %w", err)
				}
			}
			if got < 3 {
				if err := indexRunning(tx); err != nil {
					return fmt.Errorf("migrate to schema 3: %w", err)
				}
				if err := phaseQueued(tx); err != nil {
					return fmt.Errorf("migrate to schema 3: %w", err)
				}
			}
			if got < 4 {
				if err := indexRecentActions(tx, time.Now()); err != nil {
					return fmt.Errorf("migrate to schema 4: %w", err)
				}
			}
		}
		return meta.Put(keySchemaVersion, u64(SchemaVersion))
	})
}

// indexByIncident builds the journal's and the audit log's indexes by
// incident (schema 2) for a file written before them.
func indexByIncident(tx *bolt.Tx) error {
	journal, audit := tx.Bucket(bucketJournalByIncident), tx.Bucket(bucketAuditByIncident)
	if err := tx.Bucket(bucketJournal).ForEach(func(k, v []byte) error {
		var a struct {
			Incident uint64 `json:"incident"`
		}
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("decode action %x: %w", k, err)
		}
		return journal.Put(byIncident(a.Incident, binary.BigEndian.Uint64(k)), nil)
	}); err != nil {
		return err
	}
	return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
		var e struct {
			Incident uint64 `json:"incident"`
		}
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decode audit entry %x: %w", k, err)
		}
		if e.Incident == 0 {
			return nil
		}
		return audit.Put(byIncident(e.Incident, binary.BigEndian.Uint64(k)), nil)
	})
}

// indexRunning builds the index of running actions (schema 3) for a file
// written before it.
func indexRunning(tx *bolt.Tx) error {
	running := tx.Bucket(bucketRunning)
	return tx.Bucket(bucketJournal).ForEach(func(k, v []byte) error {
		var a struct {
			State ActionState `json:"state"`
		}
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("decode action %x: %w", k, err)
		}
		if a.State != ActionRunning {
			return nil
		}
		return running.Put(k, nil)
	})
}

// indexRecentActions builds the index of recent actions (schema 4) for a
// file written before it.
func indexRecentActions(tx *bolt.Tx, now time.Time) error {
	c := tx.Bucket(bucketJournal).Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		var a Action
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("decode action %x: %w", k, err)
		}
		if now.Sub(a.StartedAt) >= recentSpan {
			return nil
		}
		if err := indexRecent(tx, &a); err != nil {
			return err
		}
	}
	return nil
}

// phaseQueued gives a phase to the incidents of a file written before
// phases (schema 3) whose decision is still queued although medic already
// acted on them: executing, which a restart escalates, so that their plan
// is not run again.
func phaseQueued(tx *bolt.Tx) error {
	journal := tx.Bucket(bucketJournalByIncident)
	return tx.Bucket(bucketDecisions).ForEach(func(k, v []byte) error {
		var j DecisionJob
		if err := json.Unmarshal(v, &j); err != nil {
			return fmt.Errorf("decode decision job %x: %w", k, err)
		}
		acted := false
		if err := eachOfIncident(journal, j.Incident, func([]byte) error { acted = true; return nil }); err != nil {
			return err
		}
		if !acted {
			return nil
		}
		inc, err := getIncident(tx, u64(j.Incident))
		if err != nil || inc.Remediation.Phase != "" {
			return ignoreNotFound(err)
		}
		inc.Remediation = Remediation{Phase: PhaseExecuting}
		return putJSON(tx, bucketIncidents, u64(inc.ID), inc)
	})
}

func (s *Store) countAtOpen() error {
	return s.db.View(func(tx *bolt.Tx) error {
		s.inboxDepth.Store(int64(tx.Bucket(bucketInbox).Stats().KeyN))
		s.openCount.Store(int64(tx.Bucket(bucketIncidentKeys).Stats().KeyN))
		return nil
	})
}

// update runs fn in a write transaction and counts the commit: each one is
// an fsync (two fdatasyncs) of the file.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	err := s.db.Update(fn)
	if err == nil {
		s.writes.Add(1)
	}
	return err
}

// WriteTransactions counts the write transactions committed since Open,
// each one fsynced (GroupBoltBatch's shared commits are not counted).
func (s *Store) WriteTransactions() uint64 { return s.writes.Load() }

// Close closes the database. Writes already queued are committed first;
// later ones fail with ErrClosed.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if !s.closed {
		s.closed = true
		if s.queue != nil {
			close(s.queue)
			<-s.loopDone
		}
	}
	s.closeMu.Unlock()
	return s.db.Close()
}

// Path is the file the store lives in.
func (s *Store) Path() string { return s.db.Path() }

// InboxDepth is the number of accepted notifications not yet processed.
func (s *Store) InboxDepth() int64 { return s.inboxDepth.Load() }

// InboxProcessed counts the inbox entries processed since Open: when it
// moves, the worker is draining the inbox.
func (s *Store) InboxProcessed() uint64 { return s.processed.Load() }

// OpenIncidents is the number of incidents in the open state.
func (s *Store) OpenIncidents() int64 { return s.openCount.Load() }

// InboxCommits is the number of bbolt commits that carried inbox writes. The
// ratio of notifications to commits shows group commit at work: bbolt syncs
// once per commit (data pages, then the meta page), never once per writer.
func (s *Store) InboxCommits() uint64 { return s.commits.Load() }

// Backup writes a consistent snapshot of the whole database to w. The
// snapshot is first copied to an unlinked temporary file beside the state
// file, so that the read transaction ends before w is written: a slow or
// stalled reader of w never holds up the store (a read transaction held
// across the network blocked every write that grew the file).
func (s *Store) Backup(w io.Writer, size func(int64)) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(s.db.Path()), ".medic-backup-*")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	// Unlinked at once: the snapshot lives as long as the open file, and
	// nothing is left behind by a crash.
	if err := os.Remove(f.Name()); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	var n int64
	err = s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(f)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	if size != nil {
		size(n)
	}
	return io.Copy(w, f)
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
