package harness

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Changed returns the files of b that are new or differ from a, as paths
// relative to b, and their total size.
func Changed(a, b string) (map[string]bool, int64) {
	files := map[string]bool{}
	var n int64
	filepath.Walk(b, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(b, p)
		if !SameFile(p, filepath.Join(a, rel)) {
			files[rel] = true
			n += fi.Size()
		}
		return nil
	})
	return files, n
}

// Stamp sets the modification time of the regular files under dir to t:
// all of them if only is nil, else those whose path relative to dir it holds.
func Stamp(dir string, t time.Time, only map[string]bool) error {
	return filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if only != nil && !only[rel] {
			return nil
		}
		return os.Chtimes(p, t, t)
	})
}

// TreeSize returns the number and total size of the regular files under dir.
func TreeSize(dir string) (int, int64) {
	var files int
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			files++
			n += fi.Size()
		}
		return nil
	})
	return files, n
}

// InParallel runs fn(0) … fn(n-1) at once and joins their errors.
func InParallel(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func Median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
