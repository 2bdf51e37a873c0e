package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"
)

// The data directory of a durable Memory (MemoryConfig.Dir) holds one
// bbolt file, DiskFile: a copy-on-write B+tree whose every transaction
// commits with fsync, so that after a crash it holds exactly the
// transactions that committed, never part of one.
//
// Layout, format DiskFormat:
//
//	meta     "format" -> uvarint, "dim" -> uvarint, "fingerprint" -> bytes
//	entries  key -> entry record (see encodeEntry)
//	vectors  key -> Dim float32 little-endian + CRC-32 (only for entries
//	            with a vector)
//
// An entry and its vector are written in one transaction, so after a crash
// an entry is both or neither. The records carry a CRC-32 (IEEE) so that a
// damaged page is refused at start-up rather than served.

// DiskFile is the name of the store file in a data directory.
const DiskFile = "semcache.db"

// DiskFormat is the version of the data directory's layout this build
// writes and reads. A directory of another format is refused
// (ErrIncompatibleStore), never converted or deleted silently.
const DiskFormat = 1

var (
	// ErrStoreInUse is returned by NewMemory when another process holds
	// the data directory.
	ErrStoreInUse = errors.New("index: data directory in use by another process")
	// ErrIncompatibleStore is returned by NewMemory when the data directory
	// was written by another format version, vector dimension or embedder
	// fingerprint.
	ErrIncompatibleStore = errors.New("index: data directory incompatible")
	// ErrCorruptStore is returned by NewMemory when the store file is
	// truncated or damaged.
	ErrCorruptStore = errors.New("index: data directory damaged")
)

var (
	bucketMeta    = []byte("meta")
	bucketEntries = []byte("entries")
	bucketVectors = []byte("vectors")
)

// entryVersion is the first byte of an entry record.
const entryVersion = 1

// diskEntry is an entry as it is stored and loaded.
type diskEntry struct {
	seq       uint64
	scope     string
	expiresAt time.Time
	hasVector bool
	tags      []string
	value     []byte
}

// encodeEntry returns the record of e: version byte, seq (8 bytes, big
// endian), expiry (Unix nanoseconds, 8 bytes), hasVector byte, uvarint
// length-prefixed scope, uvarint tag count and length-prefixed tags, the
// value, then the CRC-32 (IEEE) of everything before it.
func encodeEntry(e *diskEntry) []byte {
	n := 1 + 8 + 8 + 1 + binary.MaxVarintLen64*(2+len(e.tags)) + len(e.scope) + len(e.value) + 4
	for _, t := range e.tags {
		n += len(t)
	}
	b := make([]byte, 0, n)
	b = append(b, entryVersion)
	b = binary.BigEndian.AppendUint64(b, e.seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.expiresAt.UnixNano()))
	if e.hasVector {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(e.scope)))
	b = append(b, e.scope...)
	b = binary.AppendUvarint(b, uint64(len(e.tags)))
	for _, t := range e.tags {
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
	}
	b = append(b, e.value...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// errRecord is decodeEntry's and decodeVector's error for a damaged record.
var errRecord = errors.New("damaged record")

// decodeEntry parses a record of encodeEntry. The value is copied out of
// b (bbolt's memory is only valid during its transaction).
func decodeEntry(b []byte) (*diskEntry, error) {
	if len(b) < 1+8+8+1+4 || b[0] != entryVersion {
		return nil, errRecord
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, errRecord
	}
	e := &diskEntry{seq: binary.BigEndian.Uint64(body[1:9]), expiresAt: time.Unix(0, int64(binary.BigEndian.Uint64(body[9:17]))), hasVector: body[17] == 1}
	rest := body[18:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return "", false
		}
		s := string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
		return s, true
	}
	var ok bool
	if e.scope, ok = str(); !ok {
		return nil, errRecord
	}
	nt, k := binary.Uvarint(rest)
	if k <= 0 || nt > uint64(len(rest)) {
		return nil, errRecord
	}
	rest = rest[k:]
	for range nt {
		t, ok := str()
		if !ok {
			return nil, errRecord
		}
		e.tags = append(e.tags, t)
	}
	e.value = append([]byte(nil), rest...)
	return e, nil
}

// encodeVector returns vec as little-endian float32s followed by their
// CRC-32 (IEEE).
func encodeVector(vec []float32) []byte {
	b := make([]byte, 0, 4*len(vec)+4)
	for _, x := range vec {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// decodeVectorInto parses a record of encodeVector of length dim into dst
// (len dim) and normalises it in place. A record whose CRC or length is
// wrong fails with errRecord; one that holds a zero, NaN or infinite
// vector (which Set never stores) with ErrInvalidVector.
func decodeVectorInto(dst []float32, b []byte, dim int) error {
	if len(b) != 4*dim+4 || crc32.ChecksumIEEE(b[:4*dim]) != binary.BigEndian.Uint32(b[4*dim:]) {
		return errRecord
	}
	var sum float64
	for i := range dst {
		x := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%w: component %d is %v", ErrInvalidVector, i, x)
		}
		sum += f * f
		dst[i] = x
	}
	if sum == 0 {
		return fmt.Errorf("%w: zero norm", ErrInvalidVector)
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range dst {
		dst[i] = float32(float64(x) * inv)
	}
	return nil
}

// diskOp is one change to the store file. Exactly one of its forms is used:
// put (key with entry, and vec when the entry has a vector; an entry
// without one deletes any vector the key had), retag (key with entry only:
// the vector is unchanged), del (keys) or flush (everything).
type diskOp struct {
	key   string
	entry []byte
	vec   []byte
	retag bool
	del   []string
	flush bool
}

// diskBatch is the set of operations committed in one transaction.
type diskBatch struct {
	ops  []diskOp
	done chan struct{}
	err  error // set before done is closed
}

// wait blocks until b has committed and returns its error. Batches commit
// in the order they were filled, so waiting on the last batch a caller
// submitted to waits on every earlier one too.
func (b *diskBatch) wait() error {
	<-b.done
	return b.err
}

// disk is the durable half of a Memory: the bbolt file and the writer that
// commits the operations Memory submits, in submission order, grouping
// those that arrive while a commit is running into the next transaction
// (group commit: one fsync for many concurrent stores). It is safe for
// concurrent use.
type disk struct {
	db   *bolt.DB
	path string

	mu      sync.Mutex
	cur     *diskBatch // being filled; nil when empty. Guarded by mu.
	closing bool       // guarded by mu
	wake    chan struct{}
	done    chan struct{}
}

// openDisk opens (creating when missing) the store of dir for vectors of
// dim and the embedder fingerprint fp. It fails with ErrStoreInUse when
// another process holds it, ErrIncompatibleStore when it was written by
// another format, dimension or fingerprint, and ErrCorruptStore when the
// file is truncated or damaged. It never deletes or rewrites an existing
// store it refuses.
func openDisk(dir string, dim int, fp string) (d *disk, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("index: data directory: %w", err)
	}
	path := filepath.Join(dir, DiskFile)
	// A damaged file can make bbolt read past the end of its mapping;
	// that fault is turned into a panic and then into ErrCorruptStore.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorruptStore, path, r)
		}
	}()
	if err := checkLength(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 200 * time.Millisecond, FreelistType: bolt.FreelistMapType})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("%w: %s is locked", ErrStoreInUse, path)
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
		return nil, fmt.Errorf("%w: %s: %v", ErrCorruptStore, path, err)
	case err != nil: // e.g. permissions: the file is not known to be damaged
		return nil, fmt.Errorf("index: data directory: %w", err)
	}
	d = &disk{db: db, path: path, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if err := d.checkMeta(dim, fp); err != nil {
		db.Close()
		return nil, err
	}
	go d.loop()
	return d, nil
}

// checkLength refuses, with ErrCorruptStore, an existing store file that is
// empty, shorter than its two meta pages, or shorter than the pages its
// last commit uses (a truncated file), before bbolt reads past its end. It
// reads bbolt's meta pages (format 2, little endian: magic at byte 16 of
// the page, page size at 24, high-water page id at 56, txid at 64, FNV-64a
// checksum of bytes 16..72 at 72) and uses the valid one of the higher
// txid. A missing file is fine (a new store).
func checkLength(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("index: data directory: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("index: data directory: %w", err)
	}
	size := st.Size()
	if size == 0 {
		return fmt.Errorf("%w: %s: empty file (truncated, or a crash while it was created)", ErrCorruptStore, path)
	}
	meta := func(off int64) (pageSize, need, txid uint64, ok bool) {
		var b [80]byte
		if _, err := f.ReadAt(b[:], off); err != nil {
			return 0, 0, 0, false
		}
		le := binary.LittleEndian
		h := fnv.New64a()
		h.Write(b[16:72])
		if le.Uint32(b[16:]) != 0xED0CDAED || h.Sum64() != le.Uint64(b[72:]) {
			return 0, 0, 0, false
		}
		pageSize = uint64(le.Uint32(b[24:]))
		return pageSize, le.Uint64(b[56:]) * pageSize, le.Uint64(b[64:]), true
	}
	ps, need, txid, ok := meta(0)
	if !ok {
		ps = uint64(os.Getpagesize())
	}
	if size < 2*int64(ps) {
		return fmt.Errorf("%w: %s: %d bytes, shorter than its two meta pages (truncated)", ErrCorruptStore, path, size)
	}
	if _, need1, txid1, ok1 := meta(int64(ps)); ok1 && (!ok || txid1 > txid) {
		need, ok = need1, true
	}
	if ok && uint64(size) < need {
		return fmt.Errorf("%w: %s: %d bytes, its last commit needs %d (truncated)", ErrCorruptStore, path, size, need)
	}
	return nil
}

// checkMeta checks the store's format, dimension and fingerprint in a read
// transaction; only a new store (no meta bucket, no entries) is written
// to, to record them. The file's length was checked by checkLength, and
// the full page check runs in load.
func (d *disk) checkMeta(dim int, fp string) error {
	fresh := false
	err := d.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if tx.Bucket(bucketEntries) != nil {
				return fmt.Errorf("%w: %s has entries but no format record", ErrIncompatibleStore, d.path)
			}
			fresh = true
			return nil
		}
		format, _ := binary.Uvarint(meta.Get([]byte("format")))
		if format != DiskFormat {
			return fmt.Errorf("%w: %s has format %d, this build reads format %d", ErrIncompatibleStore, d.path, format, DiskFormat)
		}
		if got, _ := binary.Uvarint(meta.Get([]byte("dim"))); got != uint64(dim) {
			return fmt.Errorf("%w: %s holds vectors of %d dimensions, the embedder gives %d", ErrIncompatibleStore, d.path, got, dim)
		}
		if got := string(meta.Get([]byte("fingerprint"))); got != fp {
			return fmt.Errorf("%w: %s was written with embedder fingerprint %q, the embedder is %q", ErrIncompatibleStore, d.path, got, fp)
		}
		if tx.Bucket(bucketEntries) == nil || tx.Bucket(bucketVectors) == nil {
			return fmt.Errorf("%w: %s: missing buckets", ErrCorruptStore, d.path)
		}
		return nil
	})
	if err != nil || !fresh {
		return err
	}
	return d.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		for k, v := range map[string][]byte{
			"format":      binary.AppendUvarint(nil, DiskFormat),
			"dim":         binary.AppendUvarint(nil, uint64(dim)),
			"fingerprint": []byte(fp),
		} {
			if err := meta.Put([]byte(k), v); err != nil {
				return err
			}
		}
		for _, b := range [][]byte{bucketEntries, bucketVectors} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// loaded is an entry read from the data directory; vec is its unit vector
// (nil for an entry without one).
type loaded struct {
	key string
	e   *diskEntry
	vec []float32
}

// loadChunk is the number of vectors decoded into one allocation.
const loadChunk = 4096

// load reads every stored entry with its unit vector, in key order, and
// returns them with the keys to delete from the file: vectors without an
// entry, and entries whose vector is invalid (neither can be served). It
// runs three passes concurrently, each in its own read transaction of the
// same snapshot (nothing writes before load returns): bbolt's page check
// of the whole file (Tx.Check), the entries and the vectors. A damaged
// page or record fails with ErrCorruptStore and nothing is written.
func (d *disk) load(dim int) (all []loaded, drop []string, err error) {
	var g errgroup.Group
	// view runs fn in a read transaction on its own goroutine, turning a
	// fault on a damaged mapping into ErrCorruptStore (SetPanicOnFault is
	// per goroutine).
	view := func(fn func(tx *bolt.Tx) error) {
		g.Go(func() (err error) {
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("%w: %s: %v", ErrCorruptStore, d.path, r)
				}
			}()
			return d.db.View(fn)
		})
	}
	view(func(tx *bolt.Tx) error {
		var first error
		for cerr := range tx.Check() { // drained: the checker runs until it is read out
			if first == nil {
				first = cerr
			}
		}
		if first != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorruptStore, d.path, first)
		}
		return nil
	})
	view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			e, err := decodeEntry(v)
			if err != nil {
				return fmt.Errorf("%w: %s: entry %q: %v", ErrCorruptStore, d.path, k, err)
			}
			all = append(all, loaded{key: string(k), e: e})
			return nil
		})
	})
	var vkeys []string
	var vecs [][]float32 // vecs[i] is vkeys[i]'s vector, nil when invalid
	view(func(tx *bolt.Tx) error {
		var chunk []float32
		return tx.Bucket(bucketVectors).ForEach(func(k, v []byte) error {
			if len(chunk) < dim {
				chunk = make([]float32, loadChunk*dim)
			}
			vec := chunk[:dim:dim]
			switch err := decodeVectorInto(vec, v, dim); {
			case errors.Is(err, ErrInvalidVector):
				vec = nil
			case err != nil:
				return fmt.Errorf("%w: %s: vector of %q: %v", ErrCorruptStore, d.path, k, err)
			default:
				chunk = chunk[dim:]
			}
			vkeys, vecs = append(vkeys, string(k)), append(vecs, vec)
			return nil
		})
	})
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	// Both passes are in key order: match them up.
	j := 0
	live := all[:0]
	for _, l := range all {
		for ; j < len(vkeys) && vkeys[j] < l.key; j++ {
			drop = append(drop, vkeys[j]) // a vector without its entry
		}
		if l.e.hasVector {
			if j == len(vkeys) || vkeys[j] != l.key {
				return nil, nil, fmt.Errorf("%w: %s: entry %q has no vector", ErrCorruptStore, d.path, l.key)
			}
			if l.vec = vecs[j]; l.vec == nil {
				drop = append(drop, l.key) // cannot be indexed: not served
				j++
				continue
			}
			j++
		} else if j < len(vkeys) && vkeys[j] == l.key {
			j++ // a stray vector of an entry without one: never read
		}
		live = append(live, l)
	}
	return live, append(drop, vkeys[j:]...), nil
}

// submit queues op behind every operation submitted before it and returns
// the batch that will commit it. Callers that keep the store's order (see
// Memory) submit under their own writer lock and wait after releasing it.
func (d *disk) submit(op diskOp) *diskBatch {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		b := &diskBatch{done: make(chan struct{}), err: errors.New("index: data directory closed")}
		close(b.done)
		return b
	}
	if d.cur == nil {
		d.cur = &diskBatch{done: make(chan struct{})}
	}
	d.cur.ops = append(d.cur.ops, op)
	b := d.cur
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return b
}

// loop commits batches until close, then commits what is left.
func (d *disk) loop() {
	defer close(d.done)
	for range d.wake {
		d.mu.Lock()
		b, closing := d.cur, d.closing
		d.cur = nil
		d.mu.Unlock()
		if b != nil {
			b.err = d.db.Update(func(tx *bolt.Tx) error { return applyOps(tx, b.ops) })
			if b.err != nil {
				b.err = fmt.Errorf("index: data directory: %w", b.err)
			}
			close(b.done)
		}
		if closing {
			return
		}
	}
}

// applyOps applies ops in order in tx.
func applyOps(tx *bolt.Tx, ops []diskOp) error {
	entries, vecs := tx.Bucket(bucketEntries), tx.Bucket(bucketVectors)
	for _, op := range ops {
		switch {
		case op.flush:
			for _, name := range [][]byte{bucketEntries, bucketVectors} {
				if err := tx.DeleteBucket(name); err != nil {
					return err
				}
				if _, err := tx.CreateBucket(name); err != nil {
					return err
				}
			}
			entries, vecs = tx.Bucket(bucketEntries), tx.Bucket(bucketVectors)
		case op.del != nil:
			for _, k := range op.del {
				if err := entries.Delete([]byte(k)); err != nil {
					return err
				}
				if err := vecs.Delete([]byte(k)); err != nil {
					return err
				}
			}
		case op.retag:
			if entries.Get([]byte(op.key)) == nil {
				continue // deleted in this batch or before
			}
			if err := entries.Put([]byte(op.key), op.entry); err != nil {
				return err
			}
		default:
			if err := entries.Put([]byte(op.key), op.entry); err != nil {
				return err
			}
			var err error
			if op.vec != nil {
				err = vecs.Put([]byte(op.key), op.vec)
			} else {
				err = vecs.Delete([]byte(op.key))
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// size returns the store file's size in bytes, or -1 when it cannot be
// read.
func (d *disk) size() int64 {
	st, err := os.Stat(d.path)
	if err != nil {
		return -1
	}
	return st.Size()
}

// close commits what was submitted, stops the writer and closes the file
// (releasing its lock). Later submissions fail.
func (d *disk) close() error {
	d.mu.Lock()
	if d.closing {
		d.mu.Unlock()
		<-d.done
		return nil
	}
	d.closing = true
	d.mu.Unlock()
	d.wake <- struct{}{}
	<-d.done
	return d.db.Close()
}
