package packager

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// OpenPackage opens the stream of the package of form f that brings a
// holder of cut from (0 = nothing) to cut to (a package from nothing has no
// deltas, whatever f). The package [Cut] built (from the previous cut) is
// used as is; any other origin is built from the stored objects on
// first use and kept in cut to's directory, so it is built once however
// many targets need it, and pruned with the cut. A stored index found
// damaged is built again.
//
// A package is stored as an index ([PackageReader]) written to a temporary
// name and renamed into place, so a reader never sees a partial one; every
// file it carries was checked against its SHA-256 while it was written.
// Packages are a cache of the objects and are not flushed: one lost or
// damaged by a power cut is refused by the difusor (which checks every
// file) and, after [Store.DiscardPackage], built again. OpenPackage is safe
// to call from several goroutines and processes at once (at worst two
// build the same package and one rename wins).
func (s *Store) OpenPackage(from, to int64, f PackageForm) (*PackageReader, error) {
	if _, err := s.Info(to); err != nil {
		return nil, err
	}
	if from < 0 || from >= to {
		return nil, fmt.Errorf("store: package from cut %d to cut %d: the origin must be older than the cut", from, to)
	}
	// The cut's own package, or one built earlier, has the same name.
	p := filepath.Join(s.CutDir(to), PackageName(from, f))
	r, err := s.openPackageIndex(p)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrBadPackageIndex) {
		return nil, fmt.Errorf("store: package: %w", err)
	}

	var fromM *Manifest
	if from > 0 {
		if fromM, _, err = s.Manifest(from); err != nil {
			return nil, fmt.Errorf("store: package from cut %d: %w", from, err)
		}
	}
	toM, mb, err := s.Manifest(to)
	if err != nil {
		return nil, err
	}
	sig, err := s.Signature(to)
	if err != nil {
		return nil, err
	}
	if _, err := s.writePackageAt(p, ComputeDelta(fromM, toM), f, mb, sig, nil); err != nil {
		return nil, fmt.Errorf("store: package from cut %d to cut %d: %w", from, to, err)
	}
	if r, err = s.openPackageIndex(p); err != nil {
		return nil, fmt.Errorf("store: package: %w", err)
	}
	return r, nil
}

// writePackageAt writes the package index for d to path through a
// temporary name in the same directory, so that path never holds a partial
// index. Objects in fresh were hashed by this process moments ago and are
// not hashed again.
func (s *Store) writePackageAt(path string, d *Delta, f PackageForm, manifest, sig []byte, fresh map[string]bool) (PackageInfo, error) {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := path + ".tmp-" + hex.EncodeToString(rnd[:])
	info, err := s.writePackageIndex(tmp, d, f, manifest, sig, fresh)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return info, err
}

// writePackageIndex writes the package index of form pf for d into path.
func (s *Store) writePackageIndex(path string, d *Delta, pf PackageForm, manifest, sig []byte, fresh map[string]bool) (PackageInfo, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return PackageInfo{}, err
	}
	out := newIndexOut(f)
	err = writePackage(out, d, pf, manifest, sig, func(e Entry) (io.ReadCloser, error) {
		f, err := s.OpenObject(e.SHA256)
		if err != nil || !fresh[e.SHA256] {
			return f, err
		}
		return justStored{f}, nil
	})
	var info PackageInfo
	if err == nil {
		info, err = out.finish()
	} else {
		out.hash.abort()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if isNoSpace(err) {
			return info, fmt.Errorf("store %s: disk full while writing a package: free space in state_dir", s.dir)
		}
		return info, fmt.Errorf("package: %w", err)
	}
	return info, nil
}

// pendingPackage is a package index being built in the store's tmp
// directory while its cut is committed.
type pendingPackage struct {
	path string
	form PackageForm
	done chan struct{}
	info PackageInfo
	err  error
}

// startPackage starts building the package of form f for d in the tmp
// directory.
func (s *Store) startPackage(d *Delta, f PackageForm, manifest, sig []byte, fresh map[string]bool) *pendingPackage {
	p := &pendingPackage{path: filepath.Join(s.tmpDir(), "pkg-"+strconv.FormatInt(d.To.Seq, 10)), form: f, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.info, p.err = s.writePackageIndex(p.path, d, f, manifest, sig, fresh)
	}()
	return p
}

// discard waits for the build and removes what is left of it.
func (p *pendingPackage) discard() {
	<-p.done
	_ = os.Remove(p.path)
}

// addPackage waits for the package of committed cut ci, from cut fromSeq,
// moves it into the cut's directory and records it in the cut's summary.
func (s *Store) addPackage(ci *CutInfo, p *pendingPackage, fromSeq int64) error {
	<-p.done
	if p.err != nil {
		return p.err
	}
	dir := s.CutDir(ci.Seq)
	name := PackageName(fromSeq, p.form)
	if err := os.Rename(p.path, filepath.Join(dir, name)); err != nil {
		return err
	}
	withPkg := *ci
	withPkg.Package, withPkg.PackageFrom, withPkg.PackageSize, withPkg.PackageSHA256 = name, fromSeq, p.info.Size, p.info.SHA256
	if err := writeJSONAtomic(filepath.Join(dir, CutInfoFile), &withPkg); err != nil {
		return err
	}
	*ci = withPkg
	return nil
}

// DiscardPackage removes the package of form f from cut from to cut to, so
// that the next [Store.OpenPackage] builds it again from the objects: for a
// package a difusor found corrupt. A missing package is not an error.
func (s *Store) DiscardPackage(from, to int64, f PackageForm) error {
	err := os.Remove(filepath.Join(s.CutDir(to), PackageName(from, f)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: discard package: %w", err)
	}
	return nil
}
