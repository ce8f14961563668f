package packager

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/prepcast/prepcast/internal/atomicfile"
	"github.com/prepcast/prepcast/internal/sysfs"
)

// Store is the local content-addressed cut store under a state directory:
//
//	store/objects/ab/<sha256>   file content, read-only, named by its SHA-256
//	store/cuts/000042/          one directory per cut, renamed into place whole:
//	    manifest.json           canonical manifest
//	    manifest.sig            its signature
//	    from-000041-deltas.pkg  package from the previous cut (from-000000.pkg for the first),
//	                            stored as an index into the objects ([PackageReader]);
//	                            from-N.pkg carries whole files ([PackageForm])
//	    cut.json                summary ([CutInfo])
//	store/tmp/                  work in progress; emptied by the next cut
//	store/scan.idx              quick-check index of the last scan
//
// A cut directory exists only once everything it names is durable, so a
// reader (a push in another process) never sees a partial cut, and a crash
// at any moment leaves the store valid. Only one process builds cuts at a
// time (an advisory lock on store/cut.lock).
type Store struct {
	dir string
}

// CutInfo summarises one cut in the store (cut.json).
type CutInfo struct {
	Seq            int64     `json:"seq"`
	ID             string    `json:"id"`
	Created        time.Time `json:"created"`
	ManifestSHA256 string    `json:"manifest_sha256"`
	Files          int       `json:"files"`
	Bytes          int64     `json:"bytes"`
	DeltaFiles     int       `json:"delta_files"`   // new or changed files since the previous cut
	DeltaBytes     int64     `json:"delta_bytes"`   // their size
	DeletedFiles   int       `json:"deleted_files"` // paths the previous cut had and this one has not
	Package        string    `json:"package"`       // file name in the cut directory; "" once pruned
	PackageFrom    int64     `json:"package_from"`  // the cut the package starts from (0 = nothing)
	PackageSize    int64     `json:"package_size"`
	PackageSHA256  string    `json:"package_sha256"`
}

// File names inside a cut directory.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.sig"
	CutInfoFile   = "cut.json"
)

// OpenStore opens (creating if needed) the store under stateDir.
func OpenStore(stateDir string) (*Store, error) {
	if stateDir == "" {
		return nil, errors.New("store: no state directory configured (set state_dir)")
	}
	dir := filepath.Join(stateDir, "store")
	for _, d := range []string{dir, filepath.Join(dir, "objects"), filepath.Join(dir, "cuts"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("store: %w (state_dir must be a writable directory)", err)
		}
	}
	return &Store{dir: dir}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) cutsDir() string         { return filepath.Join(s.dir, "cuts") }
func (s *Store) tmpDir() string          { return filepath.Join(s.dir, "tmp") }
func (s *Store) indexPath() string       { return filepath.Join(s.dir, "scan.idx") }
func (s *Store) lockPath() string        { return filepath.Join(s.dir, "cut.lock") }
func cutDirName(seq int64) string        { return fmt.Sprintf("%06d", seq) }
func (s *Store) CutDir(seq int64) string { return filepath.Join(s.cutsDir(), cutDirName(seq)) }
func (s *Store) ObjectPath(sha string) string {
	return filepath.Join(s.dir, "objects", sha[:2], sha)
}

// Seqs returns the sequence numbers of the cuts in the store, ascending.
func (s *Store) Seqs() ([]int64, error) {
	des, err := os.ReadDir(s.cutsDir())
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var seqs []int64
	for _, de := range des {
		n, err := strconv.ParseInt(de.Name(), 10, 64)
		if err != nil || !de.IsDir() || de.Name() != cutDirName(n) {
			continue
		}
		seqs = append(seqs, n)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// Info returns the summary of cut seq; the error wraps fs.ErrNotExist if the
// store does not hold it.
func (s *Store) Info(seq int64) (*CutInfo, error) {
	data, err := os.ReadFile(filepath.Join(s.CutDir(seq), CutInfoFile))
	if err != nil {
		return nil, fmt.Errorf("store: cut %d: %w", seq, err)
	}
	var ci CutInfo
	if err := json.Unmarshal(data, &ci); err != nil {
		return nil, fmt.Errorf("store: cut %d: %s: %w", seq, CutInfoFile, err)
	}
	return &ci, nil
}

// Cuts returns the summaries of all cuts in the store, ascending by seq.
func (s *Store) Cuts() ([]*CutInfo, error) {
	seqs, err := s.Seqs()
	if err != nil {
		return nil, err
	}
	out := make([]*CutInfo, 0, len(seqs))
	for _, seq := range seqs {
		ci, err := s.Info(seq)
		if err != nil {
			return nil, err
		}
		out = append(out, ci)
	}
	return out, nil
}

// Latest returns the summary of the newest cut, or nil if there is none.
func (s *Store) Latest() (*CutInfo, error) {
	seqs, err := s.Seqs()
	if err != nil || len(seqs) == 0 {
		return nil, err
	}
	return s.Info(seqs[len(seqs)-1])
}

// Manifest returns cut seq's parsed manifest and its canonical bytes. The
// bytes are checked against the hash recorded in cut.json.
func (s *Store) Manifest(seq int64) (*Manifest, []byte, error) {
	ci, err := s.Info(seq)
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(filepath.Join(s.CutDir(seq), ManifestFile))
	if err != nil {
		return nil, nil, fmt.Errorf("store: cut %d: %w", seq, err)
	}
	if Hash(data) != ci.ManifestSHA256 {
		return nil, nil, fmt.Errorf("store: cut %d: manifest.json does not match its recorded SHA-256 (the store was altered)", seq)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, nil, fmt.Errorf("store: cut %d: %w", seq, err)
	}
	return m, data, nil
}

// VerifiedManifest is [Store.Manifest] plus a check of the cut's signature
// against pub.
func (s *Store) VerifiedManifest(seq int64, pub ed25519.PublicKey) (*Manifest, []byte, []byte, error) {
	m, data, err := s.Manifest(seq)
	if err != nil {
		return nil, nil, nil, err
	}
	sig, err := s.Signature(seq)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := Verify(pub, data, sig); err != nil {
		return nil, nil, nil, fmt.Errorf("store: cut %d: %w (signed with another key?)", seq, err)
	}
	return m, data, sig, nil
}

// Signature returns cut seq's signature file.
func (s *Store) Signature(seq int64) ([]byte, error) {
	sig, err := os.ReadFile(filepath.Join(s.CutDir(seq), SignatureFile))
	if err != nil {
		return nil, fmt.Errorf("store: cut %d: %w", seq, err)
	}
	return sig, nil
}

// OpenObject opens the stored content with the given SHA-256.
func (s *Store) OpenObject(sha string) (*os.File, error) {
	if !IsSHA256Hex(sha) {
		return nil, fmt.Errorf("store: object %q: not a SHA-256", sha)
	}
	f, err := os.Open(s.ObjectPath(sha))
	if err != nil {
		return nil, fmt.Errorf("store: object %s: %w", sha, err)
	}
	return f, nil
}

// PackagePath returns the path of cut seq's package, or "" if it has none.
func (s *Store) PackagePath(ci *CutInfo) string {
	if ci.Package == "" {
		return ""
	}
	return filepath.Join(s.CutDir(ci.Seq), ci.Package)
}

// lock takes the store's exclusive build lock, waiting for another cut to
// finish. The returned function releases it.
func (s *Store) lock() (func(), error) {
	f, err := os.OpenFile(s.lockPath(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := sysfs.Lock(f, true); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: lock %s: %w", s.lockPath(), err)
	}
	return func() { f.Close() }, nil
}

// clearTmp removes leftovers of an interrupted cut. The caller holds the lock.
func (s *Store) clearTmp() error {
	des, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, de := range des {
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), de.Name())); err != nil {
			return fmt.Errorf("store: clean up %s: %w", de.Name(), err)
		}
	}
	return nil
}

// syncFS flushes the filesystem that holds the store to stable storage
// (Linux syncfs). Where the system cannot flush one filesystem, it flushes
// what the new cut names instead: the files of its directory tmp, the
// objects it stored (fresh) and their directories.
func (s *Store) syncFS(tmp string, fresh map[string]bool) error {
	f, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer f.Close()
	ok, err := sysfs.SyncFilesystem(f)
	if err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	if !ok {
		return s.syncEach(tmp, fresh)
	}
	return nil
}

// syncEach flushes the files of dir, dir itself, and the objects fresh
// with their directories, one by one.
func (s *Store) syncEach(dir string, fresh map[string]bool) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	paths := make([]string, 0, len(des)+2*len(fresh)+1)
	for _, de := range des {
		paths = append(paths, filepath.Join(dir, de.Name()))
	}
	dirs := map[string]bool{dir: true}
	for sha := range fresh {
		p := s.ObjectPath(sha)
		paths = append(paths, p)
		dirs[filepath.Dir(p)] = true
	}
	for d := range dirs {
		paths = append(paths, d)
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("store: sync: %w", err)
		}
		err = sysfs.SyncFile(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("store: sync %s: %w", p, err)
		}
	}
	return nil
}

// syncDir flushes a directory's entries.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// PruneStats reports what [Store.Prune] removed.
type PruneStats struct {
	Cuts      int   // cut directories removed whole
	Packages  int   // package files removed from cuts kept for their manifest
	Objects   int   // objects no kept cut refers to
	FreedByte int64 // bytes freed
}

// Prune keeps the newest keep cuts whole and removes older ones, except
// that a cut listed in protect (one a target has acknowledged, from which
// its next delta starts) keeps its manifest and signature. Objects that no
// whole cut refers to are deleted. Prune never removes the latest cut. It
// takes the store's build lock.
func (s *Store) Prune(keep int, protect map[int64]bool) (PruneStats, error) {
	unlock, err := s.lock()
	if err != nil {
		return PruneStats{}, err
	}
	defer unlock()
	return s.prune(keep, protect)
}

func (s *Store) prune(keep int, protect map[int64]bool) (PruneStats, error) {
	var st PruneStats
	if keep < 1 {
		keep = 1
	}
	seqs, err := s.Seqs()
	if err != nil || len(seqs) <= keep {
		return st, err
	}
	old, whole := seqs[:len(seqs)-keep], seqs[len(seqs)-keep:]
	for _, seq := range old {
		dir := s.CutDir(seq)
		if !protect[seq] {
			// Rename first so a reader never sees a cut directory that is half gone.
			gone := filepath.Join(s.tmpDir(), "pruned-"+cutDirName(seq))
			if err := os.Rename(dir, gone); err != nil {
				return st, fmt.Errorf("store: prune cut %d: %w", seq, err)
			}
			st.FreedByte += dirSize(gone)
			if err := os.RemoveAll(gone); err != nil {
				return st, fmt.Errorf("store: prune cut %d: %w", seq, err)
			}
			st.Cuts++
			continue
		}
		// A protected cut keeps its manifest, not its objects: every
		// package in it (its own, and any built for another origin) names
		// objects that go now.
		ci, err := s.Info(seq)
		if err != nil {
			return st, err
		}
		if ci.Package != "" {
			ci.Package, ci.PackageSize, ci.PackageSHA256 = "", 0, ""
			if err := writeJSONAtomic(filepath.Join(dir, CutInfoFile), ci); err != nil {
				return st, err
			}
		}
		pkgs, _ := filepath.Glob(filepath.Join(dir, "from-*"))
		for _, p := range pkgs {
			fi, _ := os.Stat(p)
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return st, fmt.Errorf("store: prune package of cut %d: %w", seq, err)
			}
			if fi != nil {
				st.FreedByte += fi.Size()
			}
			st.Packages++
		}
	}
	live := make(map[string]bool)
	for _, seq := range whole {
		m, _, err := s.Manifest(seq)
		if err != nil {
			return st, err
		}
		for _, e := range m.Entries {
			live[e.SHA256] = true
		}
	}
	objDir := filepath.Join(s.dir, "objects")
	subs, err := os.ReadDir(objDir)
	if err != nil {
		return st, fmt.Errorf("store: %w", err)
	}
	for _, sub := range subs {
		des, err := os.ReadDir(filepath.Join(objDir, sub.Name()))
		if err != nil {
			return st, fmt.Errorf("store: %w", err)
		}
		for _, de := range des {
			if live[de.Name()] {
				continue
			}
			p := filepath.Join(objDir, sub.Name(), de.Name())
			if fi, err := de.Info(); err == nil {
				st.FreedByte += fi.Size()
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return st, fmt.Errorf("store: prune object: %w", err)
			}
			st.Objects++
		}
	}
	return st, nil
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// writeJSONAtomic writes v as indented JSON to path via a temporary file in
// the same directory, synced and renamed into place.
func writeJSONAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, append(data, '\n'), 0o644, true)
}
