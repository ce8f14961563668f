package packager

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prepcast/prepcast/internal/sysfs"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// CutOptions configures [Store.Cut].
type CutOptions struct {
	Source     string             // the results tree
	Key        ed25519.PrivateKey // manifest signing key
	Zone       *time.Location     // zone of the cut ID; nil means America/Mexico_City
	Pointers   []string           // pointer files, e.g. json/main.json; each must exist in the tree
	Rehash     bool               // ignore the quick check and read every file
	AllowEmpty bool               // make a cut even if nothing changed
	Keep       int                // cuts kept whole by the prune after the cut (0 = no prune)
	Protect    map[int64]bool     // cuts whose manifests must survive the prune
	Workers    int                // files hashed at once; 0 = number of CPUs
	// Package builds the package from the previous cut as part of the cut,
	// for targets in package mode, in form FileDeltas (the form a current
	// apply takes). Without it no package is written now;
	// [Store.OpenPackage] builds one from the objects if a target ever needs it.
	Package bool
	Now     func() time.Time // clock; nil = time.Now
	Log     *zap.Logger
}

// CutResult reports what [Store.Cut] did.
type CutResult struct {
	Info        *CutInfo // the new cut, or the latest one if NoChange
	NoChange    bool     // the tree equals the latest cut; no cut was made
	Hashed      int      // files read and hashed
	HashedBytes int64
	Pruned      PruneStats
	// Phases is how long each step took: scan, hash (and store), package,
	// sync (making the cut durable) and prune.
	Phases map[string]time.Duration
}

// ErrSourceChanging wraps the error for a file that kept changing while it
// was being read.
var ErrSourceChanging = errors.New("file keeps changing while it is read")

// readAttempts is how often a file that changes while being read is tried.
const readAttempts = 3

// Cut makes the next cut of the results tree: it scans the tree, hashes new
// and changed files (by size, mtime, ctime and inode against the last scan,
// or all of them with Rehash) while copying their content into the store,
// writes and signs the manifest, builds the package from the previous cut,
// and renames the cut directory into place once all of it is durable. A
// tree equal to the latest cut gives NoChange unless AllowEmpty. On any
// error no cut appears. Cut takes the store's build lock.
func (s *Store) Cut(ctx context.Context, o CutOptions) (*CutResult, error) {
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	zone := o.Zone
	if zone == nil {
		var err error
		if zone, err = time.LoadLocation("America/Mexico_City"); err != nil {
			return nil, err
		}
	}
	if len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("cut: no signing key (set signing_key; create one with prepcast keygen)")
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.clearTmp(); err != nil {
		return nil, err
	}

	scanStart := time.Now() // file timestamps come from the real clock
	phases := map[string]time.Duration{}
	mark := scanStart
	phase := func(name string) {
		now := time.Now()
		phases[name] += now.Sub(mark)
		mark = now
	}
	// The scan, the quick-check index and the latest manifest are read at
	// once: they do not depend on each other.
	var (
		files     []scanned
		latest    *CutInfo
		prev      *Manifest
		prevBytes []byte
		idx       = scanIndex{}
		scanG     errgroup.Group
	)
	scanG.Go(func() (err error) {
		files, err = scanTree(o.Source)
		return err
	})
	scanG.Go(func() (err error) {
		if latest, err = s.Latest(); err != nil || latest == nil {
			return err
		}
		prev, prevBytes, err = s.Manifest(latest.Seq)
		return err
	})
	if !o.Rehash {
		scanG.Go(func() error {
			idx = loadIndex(s.indexPath())
			return nil
		})
	}
	if err := scanG.Wait(); err != nil {
		return nil, err
	}
	for _, p := range o.Pointers {
		found := false
		for _, f := range files {
			if f.Path == p {
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("results tree %s has no pointer file %s (the pointer setting names it); is the tree complete?", o.Source, p)
		}
	}

	// Quick check: reuse the hash of every file whose stat is unchanged and
	// whose content is still in the store.
	shas := make([]string, len(files))
	var todo []int
	for i, f := range files {
		if ie, ok := idx[f.Path]; ok && ie.Stat == f.Stat && s.haveObject(prev, f.Path, ie) {
			shas[i] = ie.SHA256
			continue
		}
		todo = append(todo, i)
	}
	var need int64
	for _, i := range todo {
		need += files[i].Stat.Size
	}
	if err := s.checkSpace(need * 2); err != nil {
		return nil, err
	}

	phase("scan")
	res := &CutResult{Phases: phases}
	workers := o.Workers
	if workers <= 0 {
		workers = max(4, 2*runtime.NumCPU())
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	var hashedBytes atomic.Int64
	var mu sync.Mutex
	fresh := map[string]bool{} // objects hashed by this cut
	for _, i := range todo {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			sha, st, err := s.ingest(o.Source, files[i].Path)
			if err != nil {
				return err
			}
			mu.Lock()
			fresh[sha] = true
			shas[i] = sha
			files[i].Stat = st
			mu.Unlock()
			hashedBytes.Add(st.Size)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	res.Hashed, res.HashedBytes = len(todo), hashedBytes.Load()
	phase("hash")

	entries := make([]Entry, len(files))
	var total int64
	for i, f := range files {
		entries[i] = Entry{Path: f.Path, Size: f.Stat.Size, SHA256: shas[i]}
		total += f.Stat.Size
	}
	if prev != nil && !o.AllowEmpty && sameEntries(prev.Entries, entries) && equalStrings(prev.Pointers, o.Pointers) {
		if err := saveIndex(s.indexPath(), files, shas, scanStart); err != nil {
			log.Warn("save scan index", zap.Error(err))
		}
		res.Info, res.NoChange = latest, true
		return res, nil
	}

	created := now().Truncate(time.Second)
	m := &Manifest{Format: ManifestFormat, Seq: 1, Zone: zone.String(), Pointers: nonNil(append([]string(nil), o.Pointers...)),
		Files: len(entries), Bytes: total, Entries: entries}
	if prev != nil {
		m.Seq, m.Prev = prev.Seq+1, Hash(prevBytes)
		if created.Before(prev.Created) {
			log.Warn("clock is behind the previous cut; keeping cut times in order",
				zap.Time("now", created), zap.Time("previous", prev.Created))
		}
		// Ids name seconds: a cut made in the same second as the previous
		// one (or while the clock is behind) takes the next second, so every
		// id is unique and ids sort as cuts do.
		if !created.After(prev.Created) {
			created = prev.Created.Add(time.Second)
		}
	}
	m.Created = created.In(zone)
	m.ID = m.Created.Format(IDLayout)
	mb, err := m.Encode()
	if err != nil {
		return nil, fmt.Errorf("cut: %w", err)
	}
	sig := Sign(o.Key, mb)
	delta := ComputeDelta(prev, m)
	var fromSeq int64
	if prev != nil {
		fromSeq = prev.Seq
	}
	// The package is derived from the objects and the manifest: it is built
	// beside the commit and the flush, and added once the cut exists. It is
	// not flushed: a package lost to a crash or a power cut (or rejected by
	// a difusor) is built again from the objects when it is needed.
	var pkg *pendingPackage
	if o.Package {
		pkg = s.startPackage(delta, FileDeltas, mb, sig, fresh)
		defer pkg.discard()
	}

	tmp, err := os.MkdirTemp(s.tmpDir(), "cut-*")
	if err != nil {
		return nil, fmt.Errorf("cut: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, ManifestFile), mb, 0o444); err != nil {
		return nil, fmt.Errorf("cut: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, SignatureFile), sig, 0o444); err != nil {
		return nil, fmt.Errorf("cut: %w", err)
	}
	ci := &CutInfo{
		Seq: m.Seq, ID: m.ID, Created: m.Created, ManifestSHA256: Hash(mb), Files: m.Files, Bytes: m.Bytes,
		DeltaFiles: len(delta.Changed), DeltaBytes: delta.Bytes(), DeletedFiles: len(delta.Deleted),
	}
	if err := writeJSONAtomic(filepath.Join(tmp, CutInfoFile), ci); err != nil {
		return nil, fmt.Errorf("cut: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Everything the cut names must be on disk before the cut exists.
	if err := s.syncFS(tmp, fresh); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, s.CutDir(m.Seq)); err != nil {
		return nil, fmt.Errorf("cut: commit cut %d: %w", m.Seq, err)
	}
	if err := syncDir(s.cutsDir()); err != nil {
		return nil, fmt.Errorf("cut: commit cut %d: %w", m.Seq, err)
	}
	phase("sync")
	res.Info = ci
	if err := saveIndex(s.indexPath(), files, shas, scanStart); err != nil {
		log.Warn("save scan index", zap.Error(err))
	}
	if o.Keep > 0 {
		st, err := s.prune(o.Keep, o.Protect)
		if err != nil {
			log.Warn("prune store", zap.Error(err))
		}
		res.Pruned = st
		phase("prune")
	}
	if pkg != nil {
		if err := s.addPackage(ci, pkg, fromSeq); err != nil {
			log.Warn("package not built now; it is built when a package-mode target needs it", zap.Int64("seq", ci.Seq), zap.Error(err))
		}
		phase("package")
	}
	return res, nil
}

// haveObject reports whether the content an index entry names is in the
// store: certainly so if the latest cut lists it at the same path,
// otherwise the object file must exist.
func (s *Store) haveObject(prev *Manifest, path string, ie indexEntry) bool {
	if prev != nil {
		if e, ok := prev.Lookup(path); ok && e.SHA256 == ie.SHA256 && e.Size == ie.Stat.Size {
			return true
		}
	}
	fi, err := os.Stat(s.ObjectPath(ie.SHA256))
	return err == nil && fi.Size() == ie.Stat.Size
}

func sameEntries(a, b []Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkSpace fails early if the store's filesystem has less than need
// bytes free.
func (s *Store) checkSpace(need int64) error {
	d, err := os.Open(s.dir)
	if err != nil {
		return nil // cannot tell; writing will fail clearly if space runs out
	}
	free, err := sysfs.FreeSpace(d)
	d.Close()
	if err != nil {
		return nil
	}
	if free < need {
		return fmt.Errorf("store %s: %d MB free, this cut needs about %d MB; free space in state_dir or prune old cuts", s.dir, free>>20, need>>20)
	}
	return nil
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// ingest copies one file of the tree into the store while hashing it, and
// returns its SHA-256 and the stat of the bytes read. A file that changes
// while it is read is read again, up to readAttempts times. The object is
// named by the hash of the bytes actually copied, so a manifest entry always
// matches the stored bytes.
func (s *Store) ingest(root, rel string) (string, fileStat, error) {
	p := filepath.Join(root, filepath.FromSlash(rel))
	for attempt := 1; ; attempt++ {
		sha, st, changed, err := s.ingestOnce(p, rel)
		if err != nil || !changed {
			return sha, st, err
		}
		if attempt == readAttempts {
			return "", fileStat{}, fmt.Errorf("results tree: %s: %w (read %d times); the generator is still writing it: cut again once it has finished", rel, ErrSourceChanging, readAttempts)
		}
		time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
	}
}

func (s *Store) ingestOnce(p, rel string) (sha string, st fileStat, changed bool, err error) {
	// O_NOFOLLOW: a file swapped for a link after the scan is refused;
	// O_NONBLOCK: one swapped for a FIFO does not hang the cut.
	f, err := sysfs.OpenNoFollow(p)
	if err != nil {
		return "", st, false, fmt.Errorf("results tree: %s: %s", rel, errText(err))
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return "", st, false, fmt.Errorf("results tree: %s: %w", rel, err)
	}
	if !before.Mode().IsRegular() {
		return "", st, false, fmt.Errorf("results tree: %s: is no longer a regular file", rel)
	}
	// Created read-only: the descriptor still writes. The name need only
	// be unique within this cut, which holds the store's lock.
	tmp, err := os.OpenFile(filepath.Join(s.tmpDir(), "obj-"+strconv.FormatInt(objTmpSeq.Add(1), 36)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", st, false, fmt.Errorf("store: %w", err)
	}
	tmpName := tmp.Name()
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	h := sha256.New()
	bp := copyBufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(tmp, h), io.LimitReader(f, before.Size()), *bp) // a file that grew shows in the stat after
	copyBufPool.Put(bp)
	if err != nil {
		if isNoSpace(err) {
			return "", st, false, fmt.Errorf("store %s: disk full while copying %s: free space in state_dir and cut again", s.dir, rel)
		}
		return "", st, false, fmt.Errorf("results tree: %s: %w", rel, err)
	}
	startWriteback(tmp)
	after, err := f.Stat()
	if err != nil {
		return "", st, false, fmt.Errorf("results tree: %s: %w", rel, err)
	}
	st = statOf(after)
	if st != statOf(before) || n != st.Size {
		return "", st, true, nil
	}
	if err := tmp.Close(); err != nil {
		if isNoSpace(err) {
			return "", st, false, fmt.Errorf("store %s: disk full while copying %s: free space in state_dir and cut again", s.dir, rel)
		}
		return "", st, false, fmt.Errorf("store: %w", err)
	}
	sha = hex.EncodeToString(h.Sum(nil))
	// Content already stored is replaced by the same bytes, just read.
	dst := s.ObjectPath(sha)
	err = os.Rename(tmpName, dst)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
			err = os.Rename(tmpName, dst)
		}
	}
	if err != nil {
		return "", st, false, fmt.Errorf("store: %w", err)
	}
	keep = true
	return sha, st, false, nil
}

// objTmpSeq numbers the temporary files objects are copied into.
var objTmpSeq atomic.Int64

func isNoSpace(err error) bool {
	return sysfs.NoSpace(err) != ""
}

// startWriteback asks the kernel to start writing f's dirty pages now,
// without waiting, so that the syncfs before the cut is committed finds
// little left to flush.
func startWriteback(f *os.File) { sysfs.StartWriteback(f) }
