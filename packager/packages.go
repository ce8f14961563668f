package packager

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Package returns the path and size of the package that brings a holder of
// cut from (0 = nothing) to cut to. The package [Cut] built (from the
// previous cut) is returned as is; any other origin is built from the
// stored objects on first use and kept in cut to's directory, so it is
// built once however many targets need it, and pruned with the cut.
//
// A package is written to a temporary name and renamed into place, so a
// reader never sees a partial one; every file it carries was checked
// against its SHA-256 while it was written. Packages are a cache of the
// objects and are not flushed: one lost or damaged by a power cut is
// refused by the difusor (which checks every file) and, after
// [Store.DiscardPackage], built again. Package is safe to
// call from several goroutines and processes at once (at worst two build
// the same package and one rename wins).
func (s *Store) Package(from, to int64) (string, int64, error) {
	if _, err := s.Info(to); err != nil {
		return "", 0, err
	}
	if from < 0 || from >= to {
		return "", 0, fmt.Errorf("store: package from cut %d to cut %d: the origin must be older than the cut", from, to)
	}
	// The cut's own package, or one built earlier, has the same name.
	p := filepath.Join(s.CutDir(to), PackageName(from))
	if fi, err := os.Stat(p); err == nil {
		return p, fi.Size(), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", 0, fmt.Errorf("store: package: %w", err)
	}

	var fromM *Manifest
	if from > 0 {
		var err error
		if fromM, _, err = s.Manifest(from); err != nil {
			return "", 0, fmt.Errorf("store: package from cut %d: %w", from, err)
		}
	}
	toM, mb, err := s.Manifest(to)
	if err != nil {
		return "", 0, err
	}
	sig, err := s.Signature(to)
	if err != nil {
		return "", 0, err
	}
	info, err := s.writePackageAt(p, ComputeDelta(fromM, toM), mb, sig, nil)
	if err != nil {
		return "", 0, fmt.Errorf("store: package from cut %d to cut %d: %w", from, to, err)
	}
	return p, info.Size, nil
}

// writePackageAt writes the package for d to path through a temporary name
// in the same directory, so that path never holds a partial package.
func (s *Store) writePackageAt(path string, d *Delta, manifest, sig []byte, fresh map[string]bool) (PackageInfo, error) {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := path + ".tmp-" + hex.EncodeToString(rnd[:])
	info, err := s.writePackageFile(tmp, d, manifest, sig, fresh)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return info, err
}

// addPackage writes the package of a committed cut from cut fromSeq and
// records it in the cut's summary. The package is not flushed: it is a
// cache of the objects, checked by its SHA-256 and by every difusor.
func (s *Store) addPackage(ci *CutInfo, d *Delta, manifest, sig []byte, fromSeq int64, fresh map[string]bool) error {
	dir := s.CutDir(ci.Seq)
	name := PackageName(fromSeq)
	info, err := s.writePackageAt(filepath.Join(dir, name), d, manifest, sig, fresh)
	if err != nil {
		return err
	}
	withPkg := *ci
	withPkg.Package, withPkg.PackageFrom, withPkg.PackageSize, withPkg.PackageSHA256 = name, fromSeq, info.Size, info.SHA256
	if err := writeJSONAtomic(filepath.Join(dir, CutInfoFile), &withPkg); err != nil {
		return err
	}
	*ci = withPkg
	return nil
}

// DiscardPackage removes the package from cut from to cut to, so that the
// next [Store.Package] builds it again from the objects: for a package a
// difusor found corrupt. A missing package is not an error.
func (s *Store) DiscardPackage(from, to int64) error {
	err := os.Remove(filepath.Join(s.CutDir(to), PackageName(from)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: discard package: %w", err)
	}
	return nil
}
