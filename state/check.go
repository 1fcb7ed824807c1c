package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrCorrupt marks a state file that cannot be used as it is: truncated,
// overwritten, or not a medic state file at all.
var ErrCorrupt = errors.New("the state file is damaged")

// The layout of a bbolt meta page (go.etcd.io/bbolt/internal/common): a
// 16-byte page header, then magic, version, page size and flags (uint32
// each), the root bucket (root page and sequence), the freelist page, the
// high-water page id and the transaction id (uint64 each), and an FNV-64a
// checksum of everything before it.
const (
	boltMagic   = 0xED0CDAED
	boltVersion = 2
	metaOffset  = 16
	metaSumLen  = 56
)

type metaPage struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
}

// readMeta decodes and validates the meta page at off, or says what is
// wrong with it.
func readMeta(f *os.File, off int64) (metaPage, error) {
	buf := make([]byte, metaOffset+metaSumLen+8)
	if _, err := f.ReadAt(buf, off); err != nil {
		return metaPage{}, fmt.Errorf("reading the meta page at %d: %w", off, err)
	}
	m := buf[metaOffset:]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic {
		return metaPage{}, fmt.Errorf("the meta page at %d has no bbolt marker", off)
	}
	if v := le.Uint32(m[4:]); v != boltVersion {
		return metaPage{}, fmt.Errorf("the meta page at %d has format version %d, not %d", off, v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:metaSumLen])
	if h.Sum64() != le.Uint64(m[metaSumLen:]) {
		return metaPage{}, fmt.Errorf("the meta page at %d fails its checksum", off)
	}
	return metaPage{pageSize: le.Uint32(m[8:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, nil
}

// CheckFile checks a state file without trusting it: both meta pages, the
// file's length against the pages they claim, then every page reachable
// from the newest valid meta page (bbolt's consistency check). A problem is
// an error wrapping ErrCorrupt that says what it found. It opens the file
// read-only; ErrLocked means a running medic holds it.
//
// A damaged file can still make bbolt panic or fault (a page past a
// truncated end is SIGBUS through the mapping), so serve runs this in a
// child process before it opens the file.
func CheckFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return nil // a new file: bbolt initialises it
	}
	if err := checkMeta(f, fi.Size(), path); err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return fmt.Errorf("check %s: %w", path, ErrLocked)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	defer db.Close()
	var problems []string
	err = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			if len(problems) < 10 {
				problems = append(problems, e.Error())
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s: %s", ErrCorrupt, path, strings.Join(problems, "; "))
	}
	return nil
}

// checkMeta checks the meta pages of a file of size bytes, and its length
// against the pages the newest valid one claims, before bbolt maps it.
func checkMeta(f *os.File, size int64, path string) error {
	m0, err0 := readMeta(f, 0)
	ps := int64(os.Getpagesize())
	if err0 == nil {
		ps = int64(m0.pageSize)
	}
	m1, err1 := readMeta(f, ps)
	var m metaPage
	switch {
	case err0 != nil && err1 != nil:
		return fmt.Errorf("%w: %s: %v; %v", ErrCorrupt, path, err0, err1)
	case err0 != nil:
		m = m1
	case err1 != nil || m0.txid > m1.txid:
		m = m0
	default:
		m = m1
	}
	if need := int64(m.pgid) * int64(m.pageSize); need < 0 || size < need {
		return fmt.Errorf("%w: %s is %d bytes, but its pages reach to %d: it was truncated", ErrCorrupt, path, size, need)
	}
	return nil
}
